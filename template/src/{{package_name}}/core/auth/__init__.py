"""Bearer JWT authentication and role checks shared by every slice."""
