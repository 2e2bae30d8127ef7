"""The store's errors. Callers map them to exit codes or HTTP statuses in one place."""


class StoreError(Exception):
    """Base of every error raised by the store."""


class InvalidModelName(StoreError, ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"invalid model name {name!r}: use 1-63 characters of a-z, 0-9, '_' or '-', "
            "starting with a letter or digit"
        )


class ModelNotFound(StoreError, LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"model {name!r} not found")
        self.name = name


class VersionNotFound(StoreError, LookupError):
    def __init__(self, name: str, version: int) -> None:
        super().__init__(f"model {name!r} has no version {version}")
        self.name = name
        self.version = version


class NoActiveVersion(StoreError, LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"model {name!r} has no active version")


class NothingToRollBack(StoreError, LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"model {name!r} has no earlier active version to roll back to")


class CorruptVersion(StoreError):
    """A version's files do not match what its metadata promises."""


class RegistryNotWritable(StoreError, PermissionError):
    pass


class JobNotFound(StoreError, LookupError):
    def __init__(self, job_id: int) -> None:
        super().__init__(f"job {job_id} not found")


class SchemaTooNew(StoreError):
    pass


class RowsRejected(StoreError):
    """The database is there but refuses these rows: a value a column cannot hold, a missing
    value, a value the driver cannot send."""


class RegistryUnavailable(StoreError, ConnectionError):
    """The registry's store cannot be reached, or refuses us (no bucket, bad credentials)."""


class RegistryBusy(StoreError):
    """A compare-and-swap kept losing to other writers; try again."""
