"""CLI command groups. Each module defines ``register(app)``; faceparse.cli wires them up.
Commands hold no step logic: they parse options and call one library function each."""
