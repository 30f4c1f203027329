"""The hall in browsers (``twin web``): a viser server of read-only pages of the live floor.

:class:`~viz.web.server.WebViewer` serves a source (a live twin through
:class:`~viz.web.live.LiveLink`, or any :class:`viz.sources.Source`); see
:mod:`viz.web.server` for the loop and what goes over the wire.
"""
