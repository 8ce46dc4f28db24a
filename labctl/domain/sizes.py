"""Dyno sizes and their memory/CPU (heroku-reference §6.1, §6.2)."""

from __future__ import annotations

from dataclasses import dataclass

from labctl.errors import InvalidInput


@dataclass(frozen=True)
class Size:
    name: str  # display name, e.g. "Standard-1X"
    memory_mb: int  # the quota (R14 above it)
    r15_factor: float  # R15 kill at memory_mb * r15_factor
    cpu_shares: int  # relative CPU weight (1x = 1024)
    tier: str  # eco | basic | standard | performance | private | shield

    @property
    def key(self) -> str:
        return self.name.lower()

    @property
    def r15_mb(self) -> int:
        return int(self.memory_mb * self.r15_factor)


_SIZES = [
    Size("Eco", 512, 2.0, 1024, "eco"),
    Size("Basic", 512, 2.0, 1024, "basic"),
    Size("Standard-1X", 512, 2.0, 1024, "standard"),
    Size("Standard-2X", 1024, 2.0, 2048, "standard"),
    Size("Performance-M", 2560, 2.0, 12288, "performance"),
    Size("Performance-L", 14336, 2.0, 51200, "performance"),
    Size("Private-S", 1024, 1.0, 12288, "private"),
    Size("Private-M", 2560, 1.0, 12288, "private"),
    Size("Private-L", 14336, 1.0, 51200, "private"),
    Size("Shield-S", 1024, 1.0, 12288, "shield"),
    Size("Shield-M", 2560, 1.0, 12288, "shield"),
    Size("Shield-L", 14336, 1.0, 51200, "shield"),
]
SIZES = {s.key: s for s in _SIZES}


def get_size(name: str) -> Size:
    """Look a size up case-insensitively (the API accepts ``standard-2x``, §1.4)."""
    size = SIZES.get((name or "").lower())
    if size is None:
        raise InvalidInput(f"Unknown dyno size {name!r}. Sizes: {', '.join(s.name for s in _SIZES)}")
    return size


def default_size(space: str | None) -> str:
    """Common Runtime apps start on Standard-1X; Private Space apps on Private-S."""
    return "Private-S" if space else "Standard-1X"


def check_size_for_runtime(size: Size, space: str | None) -> None:
    """Private/Shield sizes only in a space; Common Runtime sizes only outside one."""
    in_space_tier = size.tier in ("private", "shield")
    if space and not in_space_tier:
        raise InvalidInput(f"{size.name} dynos are not available in a Private Space; use Private-S/M/L.")
    if not space and in_space_tier:
        raise InvalidInput(f"{size.name} dynos are only available in a Private Space.")
