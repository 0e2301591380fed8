"""Generated protobuf modules: never edit by hand, run protos/generate.py."""
