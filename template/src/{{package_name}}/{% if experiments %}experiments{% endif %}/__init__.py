"""A/B experiments on top of the flags: assignment, exposures, metric events, results.

An experiment is read like a flag (``client.get_string_value("checkout-button",
"control")`` returns the caller's arm), so code does not change between a flag and an
experiment. See docs/experiments.md.
"""
