"""Example domain slice: a catalogue of items. Copy its layout for new domains."""
