"""The database side of Zapbase: embedded server, platform stand-in, migrations, connections."""
