"""A module in a plugin directory that forgot to list its runners."""


class Forgotten:
    name = "forgotten"
