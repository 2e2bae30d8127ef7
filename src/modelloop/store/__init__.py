"""Registry files and database access shared by every component. Imports nothing of ours."""
