"""The default backend: the live Client Portal Gateway (``trylast``, so any other
backend plugin, such as the fake, wins when it answers). ``requests`` is imported
only when a live transport is actually built, to keep ``ibgw --help`` fast."""

from ibgw.hookspecs import hookimpl


@hookimpl(trylast=True)
def ibgw_backend(config, pm):
    from ibgw.live import LiveTransport

    return LiveTransport(config)
