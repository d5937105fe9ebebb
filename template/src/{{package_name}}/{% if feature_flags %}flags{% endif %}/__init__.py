"""Feature flags through OpenFeature.

Application code asks an OpenFeature client (``FlagsDep``) and never a provider directly,
so the built-in provider (definitions in the service's database), flagd and LaunchDarkly
are interchangeable by configuration.
"""
