"""A plugin whose import fails: discovery must log it and carry on."""

raise RuntimeError("this plugin is broken on purpose")
