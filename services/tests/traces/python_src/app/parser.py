def parse_port(raw):
    value = raw["port"]
    return int(value)
