# Conveniences over scripts/; README.md gives the two set-up commands.
.PHONY: soak

# The fault soak, 5 minutes by default (QUOTABELL_SOAK_SECS=N make soak for another length).
soak:
	scripts/soak
