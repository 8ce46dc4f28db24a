"""labctl: a container-based runtime lab that reproduces Heroku's dyno platform on one machine."""

__version__ = "0.1.0"
