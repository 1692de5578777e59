"""Who is calling: users with passwords, JWTs, API keys, and what each may do."""
