"""The platform's rules with no I/O: names, sizes, formation grammar, action plans, placement, time.

Nothing here imports Docker, HTTP or SQL (style.md §1).
"""
