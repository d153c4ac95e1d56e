"""Produces tests/traces/python.txt: a chained ValueError -> KeyError traceback.

Run from the directory holding python_src/:  python3 python_src/main.py 2> python.txt
"""
from app import parser


def load_config(raw):
    try:
        return parser.parse_port(raw)
    except ValueError as err:
        raise KeyError("port") from err


def main():
    load_config({"port": "eighty"})


if __name__ == "__main__":
    main()
