"""A store in a MongoDB collection, through pymongo's ``AsyncMongoClient`` or motor.

One document per session::

    {"_id": <session id>, "data": <record bytes>, "expires_at": <UTC datetime, or null>}

Expiry is computed in Python from the injected clock and enforced on every read by a filter on
``expires_at``; a TTL index (``expireAfterSeconds=0``) lets the server delete expired documents
by itself, so that abandoned sessions do not pile up. The reaper only cleans up: it runs about
once a minute on ``mongod``, and correctness never depends on it. The index is created at start-up,
or, when the server could not be reached then, by the first operation that reaches it.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.errors import (
    AutoReconnect,
    ConnectionFailure,
    DuplicateKeyError,
    NetworkTimeout,
    ServerSelectionTimeoutError,
)

from litestar_flash_sessions.stores._batch import BatchedReads, Read, by_expiry
from litestar_flash_sessions.stores.base import (
    SessionStore,
    guarded,
    stored_bytes,
    validate_identifier,
    validate_timeout,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    from pymongo.asynchronous.database import AsyncDatabase
    from pymongo.results import DeleteResult, InsertOneResult, UpdateResult

__all__ = ("MongoStore",)

T = TypeVar("T")

_UNREACHABLE = (ConnectionFailure, ServerSelectionTimeoutError, NetworkTimeout, AutoReconnect)
"""pymongo's "could not reach the server" errors (all are ``ConnectionFailure``s; listed for the reader)."""

_DATA_ONLY = {"_id": False, "data": True}
"""Projection: a read transfers the record and nothing else."""
_ID_AND_DATA = {"_id": True, "data": True}
"""Projection: a batch of reads transfers each record and whose it is."""


class _Cursor(Protocol):
    """What ``find`` returns: pymongo's ``AsyncCursor`` or motor's cursor."""

    def to_list(self, length: int | None) -> Awaitable[list[Any]]: ...


class _Collection(Protocol):
    """The part of a collection the store uses: shared by pymongo's ``AsyncCollection`` and motor's."""

    def find_one(self, filter: Mapping[str, Any], *, projection: Mapping[str, Any]) -> Awaitable[Any]: ...

    def find_one_and_update(
        self,
        filter: Mapping[str, Any],
        update: Mapping[str, Any],
        *,
        projection: Mapping[str, Any],
        return_document: bool,
    ) -> Awaitable[Any]: ...

    def find(self, filter: Mapping[str, Any], *, projection: Mapping[str, Any]) -> _Cursor: ...

    def update_one(self, filter: Mapping[str, Any], update: Mapping[str, Any]) -> Awaitable[UpdateResult]: ...

    def update_many(self, filter: Mapping[str, Any], update: Mapping[str, Any]) -> Awaitable[UpdateResult]: ...

    def replace_one(self, filter: Mapping[str, Any], replacement: Mapping[str, Any]) -> Awaitable[UpdateResult]: ...

    def insert_one(self, document: Any) -> Awaitable[InsertOneResult]: ...

    def delete_one(self, filter: Mapping[str, Any]) -> Awaitable[DeleteResult]: ...

    def create_index(self, keys: str, *, expireAfterSeconds: int) -> Awaitable[str]: ...


class _Database(Protocol):
    """A pymongo ``AsyncDatabase`` or a motor ``AsyncIOMotorDatabase``."""

    def __getitem__(self, name: str) -> _Collection: ...


class MongoStore(BatchedReads, SessionStore):
    """Keep session records in a MongoDB collection.

    Who closes the client: a store made by :meth:`from_url` created its ``AsyncMongoClient``,
    owns it and closes it in :meth:`shutdown` (a store used again after that opens a new one).
    A database passed to the constructor stays the caller's: the store never closes its client,
    so one client can serve the app and the sessions; close it yourself when the app stops (for
    example in a lifespan hook after the plugin's).

    Event loops: pymongo's ``AsyncMongoClient`` (and motor's client) bind to the event loop they
    are first used on and cannot move to another. A database passed in whose client is bound to
    another loop (a client created at import time and already used by an app started before,
    such as a previous ``TestClient``) fails the start with a ``RuntimeError`` saying what to do:
    use :meth:`from_url`, whose client the store opens again on each start, or create the client
    (and the app) for each app start.

    Args:
        database: A pymongo ``AsyncDatabase`` (``AsyncMongoClient(url)["app"]``) or a motor
            ``AsyncIOMotorDatabase``.
        collection: The collection holding the sessions.
        timeout: Seconds the commands of one request may take together (any other command, on
            its own) before the store counts as unavailable; ``None`` waits as long as the driver
            does. Also give the client a short ``serverSelectionTimeoutMS``, since pymongo's
            default is 30 s.
        clock: Seconds since the epoch; injectable so that tests can move time. It must stay
            close to real time, because the server's TTL reaper compares with its own clock.

    Raises:
        ValueError: ``collection`` is not a plain identifier.
        TypeError: ``database`` is not a database (a client or a collection, say).
    """

    __slots__ = (
        "_clock",
        "_collection",
        "_connect",
        "_database",
        "_index_lock",
        "_indexed",
        "_name",
        "_owned",
        "_timeout",
    )

    def __init__(
        self,
        database: _Database,
        collection: str = "sessions",
        *,
        timeout: float | None = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # A client or a collection also supports ``[name]`` and would fail only at the first
        # request, obscurely: the database is the one of the three that lists collections.
        if not hasattr(type(database), "list_collection_names"):
            raise TypeError(f"MongoStore needs a database, such as client['app'], not {type(database).__name__}")
        self._name = validate_identifier(collection, "collection name")
        self._database: Any = database  # to check its client's event loop at start-up
        # ``None`` only between the shutdown of an owned client and the next use, which reopens it.
        self._collection: _Collection | None = database[self._name]
        self._owned: AsyncDatabase[Any] | None = None  # from_url: the database of the store's own client
        self._connect: Callable[[], AsyncDatabase[Any]] | None = None  # from_url: opens another one
        self._timeout = validate_timeout(timeout)
        self._clock = clock
        # The TTL index exists (this store created it, or found it there): no operation asks again.
        self._indexed = False
        self._index_lock = asyncio.Lock()  # one createIndexes, even when the first requests race

    @classmethod
    def from_url(
        cls,
        url: str,
        database: str,
        *,
        collection: str = "sessions",
        timeout: float | None = 5.0,
        clock: Callable[[], float] = time.time,
        **client_options: Any,
    ) -> MongoStore:
        """Return a store on an ``AsyncMongoClient`` of its own, which it closes in :meth:`shutdown`.

        Args:
            url: A MongoDB connection string, ``mongodb://host:27017`` (or ``mongodb+srv://``).
            database: The name of the database holding the collection.
            collection: As for the constructor.
            timeout: As for the constructor; also the client's ``serverSelectionTimeoutMS``,
                unless ``client_options`` set it (so that neither a request nor the app's
                shutdown waits pymongo's default 30 s for a server that is down).
            clock: As for the constructor.
            client_options: Keyword arguments for ``AsyncMongoClient`` (``tls``, ``maxPoolSize``, ...).

        Raises:
            ValueError: ``collection`` is not a plain identifier.
            pymongo.errors.InvalidName: ``database`` is not a valid database name.
            pymongo.errors.ConfigurationError: ``url`` or ``client_options`` are not valid.
        """
        selection = {} if timeout is None else {"serverSelectionTimeoutMS": max(1, round(timeout * 1000))}
        options = {**selection, **client_options}

        def connect() -> AsyncDatabase[Any]:
            return AsyncMongoClient[Any](url, **options)[database]

        owned = connect()
        store = cls(owned, collection, timeout=timeout, clock=clock)
        store._owned, store._connect = owned, connect
        return store

    async def startup(self) -> None:
        """Create the TTL index on ``expires_at``; a no-op when it already exists.

        If the server cannot be reached, the first operation that reaches it creates the index
        instead (the plugin starts the app all the same).

        Raises:
            StoreUnavailableError: The server could not be reached or timed out.
            pymongo.errors.OperationFailure: An index on ``expires_at`` exists with other
                options (for example a different ``expireAfterSeconds``): drop it first.
            RuntimeError: The client of a database the store was given is bound to another event
                loop (see the class's docstring); the message says what to do.
        """
        if self._owned is None and self._connect is None:
            _check_loop(self._database)
        # Always asked, even when an operation created it already: the plugin's start-up is
        # where a conflicting index must fail loudly, and it costs one command per app start.
        await self._create_index()

    async def _create_index(self) -> None:
        await self._guard(self._sessions().create_index("expires_at", expireAfterSeconds=0))
        self._indexed = True

    async def _ready(self) -> _Collection:
        """Return the collection, once its TTL index exists (created here if start-up could not).

        Raises:
            StoreUnavailableError: The server could not be reached or timed out.
            pymongo.errors.OperationFailure: A conflicting index on ``expires_at`` exists.
        """
        if not self._indexed:
            async with self._index_lock:
                if not self._indexed:  # another request may have created it while this one waited
                    await self._create_index()
        return self._sessions()

    async def shutdown(self) -> None:
        """Close the client if the store created it (:meth:`from_url`); a database it was given stays open."""
        if self._owned is not None:
            owned, self._owned, self._collection = self._owned, None, None
            await owned.client.close()

    def _sessions(self) -> _Collection:
        """Return the collection, on a new client of the store's own if :meth:`shutdown` closed the last one.

        (pymongo refuses any use of a closed client, and an app may start again: tests do.)
        """
        if self._collection is None:
            assert self._connect is not None  # only a client of the store's own is ever closed
            self._owned = self._connect()
            self._collection = self._owned[self._name]
        return self._collection

    async def _read_one(self, read: Read) -> bytes | None:
        """One read alone: a plain read is one ``find``; a sliding read is one ``findAndModify``
        that matches only an unexpired document, so an expired session is never revived.
        """
        session_id, expires_in = read
        sessions = await self._ready()
        now = self._now()
        query = {"_id": session_id, **_unexpired(now)}
        if expires_in is None:
            found = sessions.find_one(query, projection=_DATA_ONLY)
        else:
            found = sessions.find_one_and_update(
                query,
                {"$set": {"expires_at": _expiry(now, expires_in)}},
                projection=_DATA_ONLY,
                return_document=ReturnDocument.BEFORE,
            )
        document = await self._guard(found)
        # stored_bytes(): a client with a custom codec may hand back bson.Binary (a bytes subclass).
        return None if document is None else stored_bytes(document.get("data"))

    async def _read_many(self, reads: Sequence[Read]) -> list[bytes | None]:
        """Several reads, per expiry among them (one, normally): one ``update`` of every unexpired
        document of the batch (``$in``, ``multi``) that slides their expiry, then one ``find`` of
        them; reads that do not slide, the ``find`` alone. Two round trips for the whole batch
        instead of one per read.

        Not atomic as one ``findAndModify`` is, and need not be: a write between the two
        commands is read as it is then (a read after it), never an expired or deleted document
        revived (both commands match unexpired documents only).
        """
        sessions = await self._ready()
        now = self._now()
        groups = by_expiry(reads)
        found: dict[Read, bytes] = {}
        for expires_in, ids in groups.items():
            query = {"_id": {"$in": ids}, **_unexpired(now)}
            if expires_in is not None:
                await self._guard(sessions.update_many(query, {"$set": {"expires_at": _expiry(now, expires_in)}}))
            documents = await self._guard(sessions.find(query, projection=_ID_AND_DATA).to_list(None))
            found.update(((document["_id"], expires_in), stored_bytes(document.get("data"))) for document in documents)
        return [found.get(read) for read in reads]

    async def set(self, session_id: str, record: bytes, expires_in: int | None, previous: bytes | None) -> bool:
        """Write ``record`` if the stored, unexpired record is still ``previous``.

        With ``previous``: one ``update`` whose filter includes the old bytes, so the server
        compares and writes atomically. Without: one ``insert`` (the ``_id`` index refuses an
        existing id); only if the id is taken, one ``replace`` that succeeds when the document
        holding it has expired but has not been reaped yet.
        """
        sessions = await self._ready()
        now = self._now()
        fields = {"data": record, "expires_at": _expiry(now, expires_in)}
        if previous is not None:
            query = {"_id": session_id, "data": previous, **_unexpired(now)}
            updated = await self._guard(sessions.update_one(query, {"$set": fields}))
            return updated.matched_count == 1
        try:
            await self._guard(sessions.insert_one({"_id": session_id, **fields}))
        except DuplicateKeyError:
            stale = {"_id": session_id, "expires_at": {"$lte": now}}
            replaced = await self._guard(sessions.replace_one(stale, fields))
            return replaced.matched_count == 1
        return True

    async def delete(self, session_id: str) -> None:
        """Delete the session's document, if any."""
        await self._guard((await self._ready()).delete_one({"_id": session_id}))

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), tz=UTC)

    async def _guard(self, operation: Awaitable[T]) -> T:
        return await guarded(operation, self._timeout, "MongoStore", _UNREACHABLE)


def _check_loop(database: Any) -> None:
    """Refuse a database whose client is bound to another event loop than the running one.

    motor says which loop its client is on (``get_io_loop()``, which binds an unbound client to
    the running loop, as its first operation would); pymongo's ``AsyncMongoClient`` remembers the
    loop of its first use in an attribute, read defensively (``None`` until that use).

    Raises:
        RuntimeError: The client is bound to another loop.
    """
    current = asyncio.get_running_loop()
    # On the class: any attribute of a pymongo database is a collection of that name.
    get_io_loop = getattr(type(database), "get_io_loop", None)  # motor's
    loop = get_io_loop(database) if callable(get_io_loop) else getattr(database.client, "_loop", None)
    if not isinstance(loop, asyncio.AbstractEventLoop) or loop is current:
        return
    where = "one closed now" if loop.is_closed() else "one still open"
    raise RuntimeError(
        "MongoStore: the client of the database it was given is bound to another event loop than the "
        f"app's ({where}): pymongo's AsyncMongoClient and motor bind to the loop they are first used on, so "
        "a client created at import time works for the first app started only (one TestClient, not the "
        "next). Use MongoStore.from_url(url, database, ...), whose client the store opens again on each "
        "start, or create the client, and the app, for each start (in an app factory or a test fixture)."
    )


def _unexpired(now: datetime) -> dict[str, Any]:
    """Return a filter for documents unexpired at ``now``; expired ones may linger until the reaper runs."""
    return {"$or": [{"expires_at": None}, {"expires_at": {"$gt": now}}]}


def _expiry(now: datetime, expires_in: int | None) -> datetime | None:
    return None if expires_in is None else now + timedelta(seconds=expires_in)
