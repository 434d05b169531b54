"""Bolt listeners: thin — parse, call the engine in `bot`, render with `blocks`.

The Slack app itself (`build_app`, slash commands, actions, App Home) is the next step; the
engine under `bot/` already keeps every state an action needs.
"""
