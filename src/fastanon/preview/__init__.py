"""The local preview page (`fastanon serve`): check, mask and download one file in the browser."""

from .server import PreviewServer, ServeOptions, serve, start

__all__ = ["PreviewServer", "ServeOptions", "serve", "start"]
