"""The built-in provider: flag definitions in the service's database, evaluated in memory,
changed through the admin API, served to other services over OFREP."""
