# Conveniences over scripts/; README.md gives the two set-up commands.
.PHONY: soak soak-pg

# The fault soak, 5 minutes by default (QUOTABELL_SOAK_SECS=N make soak for another length).
soak:
	scripts/soak

# The same on three backend instances sharing one throwaway PostgreSQL database, with instance
# and listener kills among the faults.
soak-pg:
	QUOTABELL_SOAK_STORE=postgres scripts/soak
