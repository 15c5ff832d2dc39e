"""Slack listeners: one module per group, each a set of named module-level functions and the table
`register(app)` installs them from (the Bolt starter template's layout). What they all need, the
runtime, the parsed value, the clock and the reply, comes from the middleware in `context`."""
