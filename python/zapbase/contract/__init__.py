"""The contract frontends build on: TypeScript types (`zapbase types`) and the API reference
(`zapbase docs`), both generated from a database migrated from scratch and committed, so a
schema change shows up in review and a stale copy fails the tests."""
