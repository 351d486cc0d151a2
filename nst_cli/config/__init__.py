"""The configuration: pydantic models, bounded YAML loading, overrides, and every key's
documentation. Never imports torch, so `nst --help` and `--print-config` answer at once."""
