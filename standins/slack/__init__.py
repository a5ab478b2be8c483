"""Stand-in for the Slack Web API, so the real `slack_sdk` runs unchanged.

This is a **stand-in**, not Slack: a local server that speaks Slack's wire
protocol, answering the Web API methods amend uses with Slack's response
shapes and error codes, and keeping everything it was asked to do in memory
so tests can look at it. The dev stack, the demo and the tests run against it
when no Slack workspace is configured.

Point the real client at it::

    async with serve(create_app()) as served:
        client = AsyncWebClient(token="xoxb-amend-stand-in", base_url=served.url + "/api/")

Web API methods are served at ``POST /api/<method>`` (``GET`` works too, as
slack_sdk sends a few read methods that way). Bodies may be
``application/x-www-form-urlencoded`` or ``application/json``; query
parameters are merged in. Fields that slack_sdk JSON-encodes in form bodies
(``blocks``, ``view``, ``metadata``, ``attachments``) are accepted as strings or
as JSON values.

Methods: ``auth.test``, ``chat.postMessage``, ``chat.update``,
``chat.postEphemeral``, ``chat.getPermalink``, ``views.open``, ``views.update``,
``conversations.info``, ``users.info``, ``usergroups.users.list``,
``apps.connections.open``. Anything else answers
``{"ok": false, "error": "unknown_method"}``. Test control is under
``/_standin/`` (no auth; see `standins.slack.control`).

Modules, one per API area
-------------------------
* `app`: `create_app(config)`, which builds the FastAPI app from the routers;
* `config`: `SlackStandInConfig`;
* `state`: `SlackStandInState`, the one state object, `standin_state(app)` for
  tests and the `SlackState` dependency routes reach it through;
* `web_api`: `/api/<method>`: call records, faults, the token check, dispatch;
* `auth`: the token check and `auth.test`;
* `chat`: `chat.postMessage`, `chat.update`, `chat.postEphemeral`,
  `chat.getPermalink`;
* `views`: `views.open`, `views.update`;
* `conversations`: the configured channels and `conversations.info`;
* `users`: `users.info`;
* `usergroups`: `usergroups.users.list`;
* `socket_mode`: the Socket Mode websocket and `apps.connections.open`;
* `control`: `/_standin/*`;
* `wire`: how every method reads its arguments and refuses a call.
"""
