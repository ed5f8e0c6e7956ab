"""Registry rules over plain values: no database, no broker, no framework (unit-tested alone)."""
