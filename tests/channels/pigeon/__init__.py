"""Pigeon post: a made-up SMS provider that exists to prove a channel is one folder and one line.

It lives in this folder only (the tests add "pigeon" to `Runtime.channels`, the registry's extension
point; gateway/http and gateway/app are untouched) and has what a real channel package has:

  routes.py   POST /webhooks/pigeon: a JSON message signed with the shared key -> intake
  sender.py   live_senders(rt): carries SMS by POSTing JSON to PIGEON_OUTBOUND_URL
  secrets.py  the settings it reads itself: PIGEON_KEY, PIGEON_OUTBOUND_URL
"""
