"""The web chat channel: visitor sessions, the socket protocol, identification, the outbound sender.

  tokens.py    signed, expiring visitor session tokens and the business's identity tokens (pure)
  protocol.py  client frame parsing, server frame rendering, per-connection rate limit, Origin check (pure)
  store.py     the PostgreSQL reads and status writes a chat socket needs
  identify.py  linking a visitor to a known contact, merging an anonymous thread into theirs
  hub.py       one Redis pub/sub connection per process, fanning chat events out to local sockets
  sender.py    the ChannelSender for Channel.WEBCHAT (always live)
  routes.py    POST /chat/session, GET /chat/ws, the widget and the demo page
  static/      widget.js (the embeddable widget, no build step) and demo.html (the page at /)
  socket.py    one visitor tab's WebSocket: authentication, intake, pushing the thread
"""
