"""GPU profiles and budgets: the YAML files a user writes, strictly validated
(:mod:`~vastnb.profiles.profile`, :mod:`~vastnb.profiles.budgets`, :mod:`~vastnb.profiles.yamlspec`)."""
