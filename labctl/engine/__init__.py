"""Adapters to the outside world: the Docker engine, nginx config, images. Only this package imports docker."""
