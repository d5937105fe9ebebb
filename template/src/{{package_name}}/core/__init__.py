"""Cross-cutting building blocks every feature slice depends on."""
