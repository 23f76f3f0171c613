"""Where a run's ML Metadata lives, and connecting to it.

A run's MLMD store is the SQLite file `<output_dir>/metadata.sqlite` unless the run names another
one: a MySQL (or MariaDB) database, as TFX runs in production
(`tfx.orchestration.metadata.mysql_metadata_connection_config`), from `--metadata_mysql_host`,
`--metadata_mysql_port`, `--metadata_mysql_database` and `--metadata_mysql_user`, or any store
from `--metadata_connection_config=FILE`, a text-format `ml_metadata.proto.ConnectionConfig`
(TFX's own format: `mysql { host: ... port: ... database: ... user: ... }`).

The MySQL password is never a flag (it would show in `ps`) and never written anywhere by this
project: every connection takes it from $OFFICIAL_TFX_METADATA_MYSQL_PASSWORD, unless a
--metadata_connection_config file holds one itself.

A run on another store than the default records it, without the password, in
`<output_dir>/metadata_connection.pbtxt` (the same text format), so that `official-tfx report` and
`runs` of that directory, and a later run into it, reconnect to it. One database belongs to one
output directory: the database records its owner (a context of type `official_tfx_output_dir`
named by the directory's absolute path), and a run from another directory is refused, since the
run lock of an output directory must also cover the store its runs write (a run closing the
executions a killed run left unfinished would otherwise close another live run's).

Connection failures are `MetadataConnectionError`, one line naming the store (host:port/database)
and the reason: MLMD's own message is often empty for MySQL (`mysql_real_connect failed: errno: ,
error: `), so the server is probed here to tell a server that is down from a refused login.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import tempfile
from typing import Optional, Union

from google.protobuf import text_format
from ml_metadata.proto import metadata_store_pb2

PASSWORD_ENV = 'OFFICIAL_TFX_METADATA_MYSQL_PASSWORD'
SQLITE_FILE = 'metadata.sqlite'
RECORD_FILE = 'metadata_connection.pbtxt'
OWNER_TYPE = 'official_tfx_output_dir'
DEFAULT_MYSQL_PORT = 3306
PROBE_SECONDS = 10  # how long the diagnosis of a failed connection waits for the server
# MLMD runs `CREATE DATABASE IF NOT EXISTS <name>` with the name unquoted.
_DATABASE_NAME = re.compile(r'^[A-Za-z0-9_$]{1,64}$')

Where = Union[str, metadata_store_pb2.ConnectionConfig]


class MetadataConnectionError(Exception):
  """ML Metadata cannot be reached or used: a one-line message naming the store and the reason."""


def sqlite_config(path: str, readonly: bool = False) -> metadata_store_pb2.ConnectionConfig:
  """A ConnectionConfig of the SQLite file at `path` (created when missing, unless `readonly`)."""
  config = metadata_store_pb2.ConnectionConfig()
  config.sqlite.filename_uri = path
  config.sqlite.connection_mode = (
      metadata_store_pb2.SqliteMetadataSourceConfig.READONLY if readonly
      else metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE)
  return config


def mysql_config(host: str, port: int, database: str, user: str,
                 password: Optional[str] = None) -> metadata_store_pb2.ConnectionConfig:
  """A ConnectionConfig of a MySQL database, as TFX's `mysql_metadata_connection_config` makes it.

  Args:
    host, port: the server (a name or address; `localhost` makes the MySQL client use the
      server's Unix socket: give 127.0.0.1 for TCP on this machine).
    database: the MLMD database, created at the first connection when missing (and the user may).
    user: the MySQL account.
    password: None takes $OFFICIAL_TFX_METADATA_MYSQL_PASSWORD (no password when it is unset).

  Raises:
    ValueError: an empty host, database or user, a port out of range or a database name MLMD
      cannot use (one line).
  """
  config = metadata_store_pb2.ConnectionConfig()
  config.mysql.host = host or ''
  config.mysql.port = port
  config.mysql.database = database or ''
  config.mysql.user = user or ''
  if password is not None:
    config.mysql.password = password
  return with_password(check_config(config))


def check_config(config: metadata_store_pb2.ConnectionConfig
                 ) -> metadata_store_pb2.ConnectionConfig:
  """`config`, checked for what MLMD would otherwise abort the process on (its C++ CHECKs) or
  fail on obscurely.

  Accepted: `sqlite` with a `filename_uri` (made absolute; the mode defaults to read-write,
  created when missing), and `mysql` with a database name of letters, digits, `_` and `$`, a
  user, and exactly one of `host` and `socket`.

  Raises:
    ValueError: anything else, in one line.
  """
  kind = config.WhichOneof('config')
  if kind == 'sqlite':
    if not config.sqlite.filename_uri:
      raise ValueError('sqlite needs a filename_uri')
    if '://' not in config.sqlite.filename_uri:
      config.sqlite.filename_uri = os.path.abspath(config.sqlite.filename_uri)
    if config.sqlite.connection_mode == metadata_store_pb2.SqliteMetadataSourceConfig.UNKNOWN:
      config.sqlite.connection_mode = (
          metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE)
    return config
  if kind != 'mysql':
    raise ValueError(f'ML Metadata on {kind or "nothing"} is not supported here: give a mysql '
                     '{...} or sqlite {...} ConnectionConfig')
  mysql = config.mysql
  if bool(mysql.host) == bool(mysql.socket):
    raise ValueError('mysql needs exactly one of host and socket')
  if not _DATABASE_NAME.match(mysql.database):
    raise ValueError(f'mysql database {mysql.database!r}: expected a name of letters, digits, '
                     '_ and $ (at most 64), which MLMD creates when missing')
  if not mysql.user:
    raise ValueError('mysql needs a user')
  if not 0 <= mysql.port <= 65535:
    raise ValueError(f'mysql port {mysql.port} is out of range')
  return config


def with_password(config: metadata_store_pb2.ConnectionConfig
                  ) -> metadata_store_pb2.ConnectionConfig:
  """`config` with the MySQL password from $OFFICIAL_TFX_METADATA_MYSQL_PASSWORD when it has
  none (a copy; `config` itself is left as it is)."""
  result = _copy(config)
  if result.HasField('mysql') and not result.mysql.password and os.environ.get(PASSWORD_ENV):
    result.mysql.password = os.environ[PASSWORD_ENV]
  return result


def redacted(config: metadata_store_pb2.ConnectionConfig) -> metadata_store_pb2.ConnectionConfig:
  """A copy of `config` without the MySQL password (what may be written or shown)."""
  result = _copy(config)
  if result.HasField('mysql'):
    result.mysql.ClearField('password')
  return result


def describe(where: Where) -> str:
  """The store as one short line without the password: `mysql://user@host:port/database`,
  `mysql://user@localhost/database?socket=PATH` or `sqlite:PATH`."""
  if isinstance(where, str):
    return f'sqlite:{where}'
  kind = where.WhichOneof('config')
  if kind == 'sqlite':
    return f'sqlite:{where.sqlite.filename_uri}'
  if kind == 'mysql':
    mysql = where.mysql
    user = f'{mysql.user}@' if mysql.user else ''
    if mysql.socket:
      return f'mysql://{user}localhost/{mysql.database}?socket={mysql.socket}'
    return f'mysql://{user}{mysql.host}:{mysql.port or DEFAULT_MYSQL_PORT}/{mysql.database}'
  return kind or 'no store'


def parse_config(text: str, source: str) -> metadata_store_pb2.ConnectionConfig:
  """A text-format ConnectionConfig, checked (`check_config`), its password filled in from the
  environment when it has none (`with_password`).

  Raises:
    ValueError: not a ConnectionConfig, or one `check_config` refuses; the message names
      `source`.
  """
  config = metadata_store_pb2.ConnectionConfig()
  try:
    text_format.Parse(text, config)
    return with_password(check_config(config))
  except (text_format.ParseError, ValueError) as e:
    raise ValueError(f'{source}: not a usable ml_metadata ConnectionConfig: '
                     f'{" ".join(str(e).split())}') from None


def read_config_file(path: str) -> metadata_store_pb2.ConnectionConfig:
  """The text-format ConnectionConfig in the file at `path` (see `parse_config`).

  Raises:
    ValueError: the file is unreadable or not a usable ConnectionConfig (one line).
  """
  try:
    with open(path, encoding='utf-8') as f:
      text = f.read()
  except (OSError, UnicodeDecodeError) as e:
    raise ValueError(f'{path}: cannot read it ({getattr(e, "strerror", None) or e})') from None
  return parse_config(text, path)


def sqlite_path(where: Where) -> Optional[str]:
  """The SQLite file of a store; None for a database server."""
  if isinstance(where, str):
    return where
  return where.sqlite.filename_uri if where.HasField('sqlite') else None


def exists(where: Where) -> bool:
  """Whether the store is there to read: a SQLite file that exists; a server's database always
  (the run's check created it)."""
  path = sqlite_path(where)
  return path is None or os.path.exists(path)


def connect(where: Where, readonly: bool = True):
  """An `ml_metadata.MetadataStore` on `where`: a SQLite file path or a ConnectionConfig.

  Args:
    where: the store.
    readonly: open a SQLite file read-only (it must exist); a server's database is opened
      read-write whatever this says (MLMD creates the database and its schema when missing).

  Raises:
    MetadataConnectionError: the store cannot be opened: one line naming it and the reason.
  """
  import ml_metadata as mlmd  # pylint: disable=import-outside-toplevel  # its C++ library is heavy

  if isinstance(where, str):
    config = sqlite_config(where, readonly)
  else:
    config = _copy(where)
    try:
      check_config(config)
    except ValueError as e:
      raise MetadataConnectionError(f'ML Metadata at {describe(config)}: {e}') from None
    if readonly and config.HasField('sqlite'):
      config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
  try:
    return mlmd.MetadataStore(config)
  except Exception as e:  # pylint: disable=broad-except  # MLMD raises RuntimeError and others
    raise MetadataConnectionError(
        f'ML Metadata at {describe(config)}: {_reason(config, e)}') from None


def _copy(config: metadata_store_pb2.ConnectionConfig) -> metadata_store_pb2.ConnectionConfig:
  result = metadata_store_pb2.ConnectionConfig()
  result.CopyFrom(config)
  return result


def _server_text(message: str) -> str:
  """The server's own words in an MLMD MySQL error (`..., error: <text>`), or ''."""
  found = re.search(r'error: (.*)$', message, re.S)
  return ' '.join(found.group(1).split()) if found else ''


def _reason(config: metadata_store_pb2.ConnectionConfig, error: Exception) -> str:
  """Why a connection failed, in words: the server's message when MLMD passes one on, else what
  a probe of the server finds (see `probe`)."""
  message = ' '.join(str(error).split())
  if not config.HasField('mysql'):
    return message or type(error).__name__
  said = _server_text(message)
  database = config.mysql.database
  if message.startswith('Creating database'):
    return f'cannot create database {database}: {said or message}'
  if message.startswith('Changing to database'):
    return f'cannot use database {database}: {said or message}'
  if 'mysql_real_connect failed' in message and said:
    return said
  if 'mysql_real_connect failed' in message:
    return probe(config.mysql)
  return said or message or type(error).__name__


def probe(mysql: metadata_store_pb2.MySQLDatabaseConfig, timeout: float = PROBE_SECONDS) -> str:
  """Why a MySQL login failed, found by opening a connection to the server and reading its
  greeting: no such host, nothing listening, no answer, not a MySQL server, the server turning
  this client away (its error), or, when it greets, the login it refused.

  Returns:
    The reason, one line.
  """
  where = mysql.socket or f'{mysql.host}:{mysql.port or DEFAULT_MYSQL_PORT}'
  if mysql.host == 'localhost':  # libmysqlclient's convention, whatever the port says
    return ('cannot connect: the MySQL client reaches host `localhost` through the server\'s '
            'Unix socket at its default path, not by TCP: give 127.0.0.1 for TCP, or the socket '
            'in a --metadata_connection_config file')
  try:
    if mysql.socket:
      connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
      connection.settimeout(timeout)
      connection.connect(mysql.socket)
    else:
      connection = socket.create_connection((mysql.host, mysql.port or DEFAULT_MYSQL_PORT),
                                            timeout=timeout)
  except socket.gaierror:
    return f'cannot connect: unknown host {mysql.host!r}'
  except ConnectionRefusedError:
    return f'cannot connect: connection refused (no server listens on {where})'
  except socket.timeout:
    return f'cannot connect: no answer from {where} within {timeout:g} s'
  except FileNotFoundError:
    return f'cannot connect: no socket at {mysql.socket}'
  except OSError as e:
    return f'cannot connect: {e.strerror or e}'
  with connection:
    try:
      greeting = connection.recv(512)
    except socket.timeout:
      return f'cannot connect: {where} sent no MySQL greeting within {timeout:g} s'
    except OSError as e:
      return f'cannot connect: {where} closed the connection ({e.strerror or e})'
  # A MySQL packet: 3-byte length, sequence number, then the payload: a handshake (protocol 10,
  # then the server version, NUL-terminated) or an error (0xff, 2-byte code, message).
  payload = greeting[4:]
  if payload[:1] == b'\xff':
    text = payload[3:].decode('utf-8', 'replace')
    return f'the server turned the connection away: {text}'
  if payload[:1] != b'\x0a':
    return f'cannot connect: {where} does not answer as a MySQL server'
  version = payload[1:].split(b'\0', 1)[0].decode('ascii', 'replace')
  version = version[len('5.5.5-'):] if version.startswith('5.5.5-') else version  # MariaDB's
  user = mysql.user or '(none)'
  if not mysql.password:
    return (f'the server ({version}) refused the login of user {user!r} without a password: '
            f'${PASSWORD_ENV} is not set')
  return (f'the server ({version}) refused the login of user {user!r}: wrong user or password, '
          'or the user may not log in from this host')


def _owners(store) -> list:
  try:
    return sorted(store.get_contexts_by_type(OWNER_TYPE), key=lambda c: c.id)
  except Exception:  # pylint: disable=broad-except  # the type does not exist yet
    return []


def check(config: metadata_store_pb2.ConnectionConfig, output_dir: str):
  """Connects to a run's store (creating a server's database and MLMD's schema when missing) and
  checks that it belongs to `output_dir` or to no directory yet; returns the store.

  Raises:
    MetadataConnectionError: the store cannot be opened, or holds another output directory's
      runs (one line).
  """
  store = connect(config, readonly=False)
  owners = _owners(store)
  if owners and owners[0].name != os.path.abspath(output_dir):
    raise MetadataConnectionError(
        f'ML Metadata at {describe(config)} holds the runs of {owners[0].name}: give '
        f'{os.path.abspath(output_dir)} a database of its own (an output directory and its '
        'store go together)')
  return store


def claim(config: metadata_store_pb2.ConnectionConfig, output_dir: str) -> None:
  """Makes a run's store the store of `output_dir`: records `output_dir` as its owner in the
  store (when it has none) and the connection, without its password, in
  `<output_dir>/metadata_connection.pbtxt`. Call under the output directory's run lock.

  Raises:
    MetadataConnectionError: see `check`.
  """
  output_dir = os.path.abspath(output_dir)
  store = check(config, output_dir)
  if not _owners(store):
    type_id = store.put_context_type(metadata_store_pb2.ContextType(name=OWNER_TYPE))
    store.put_contexts([metadata_store_pb2.Context(type_id=type_id, name=output_dir)])
    check(config, output_dir)  # two directories claiming at once: the first one wins
  text = (f'# The ML Metadata store of the official-tfx runs in this directory. The password is '
          f'not recorded:\n# connections take it from ${PASSWORD_ENV}.\n'
          + text_format.MessageToString(redacted(config)))
  fd, tmp = tempfile.mkstemp(dir=output_dir, prefix='.' + RECORD_FILE)
  with os.fdopen(fd, 'w') as f:
    f.write(text)
  os.replace(tmp, os.path.join(output_dir, RECORD_FILE))


def recorded(output_dir: str) -> Optional[metadata_store_pb2.ConnectionConfig]:
  """The store recorded in `<output_dir>/metadata_connection.pbtxt`, its password from the
  environment; None when there is no record (the store is `<output_dir>/metadata.sqlite`).

  Raises:
    MetadataConnectionError: the record is unreadable or not a usable ConnectionConfig.
  """
  path = os.path.join(output_dir, RECORD_FILE)
  if not os.path.isfile(path):
    return None
  try:
    return read_config_file(path)
  except ValueError as e:
    raise MetadataConnectionError(str(e)) from None


def for_output_dir(output_dir: str) -> Where:
  """The store of the runs in `output_dir`: the recorded one (`recorded`), else its SQLite file.

  Raises:
    FileNotFoundError: the directory holds neither (no run has written it).
    MetadataConnectionError: an unusable record.
  """
  config = recorded(output_dir)
  if config is not None:
    return config
  path = os.path.join(output_dir, SQLITE_FILE)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{output_dir} holds no run: neither {SQLITE_FILE} nor {RECORD_FILE} '
                            'is there')
  return path


def holds_runs(output_dir: str) -> bool:
  """Whether `output_dir` holds a store of runs (its SQLite file or a recorded connection)."""
  return any(os.path.isfile(os.path.join(output_dir, name)) for name in (SQLITE_FILE, RECORD_FILE))


def choose(output_dir: str, given: Optional[metadata_store_pb2.ConnectionConfig]
           ) -> Optional[metadata_store_pb2.ConnectionConfig]:
  """The store of a run into `output_dir`: `given` (from the flags), else the one recorded there;
  None for the default, `<output_dir>/metadata.sqlite`.

  Raises:
    ValueError: `given` is not the store the directory's earlier runs were recorded in (its
      SQLite file or its recorded connection): their history, cache and artifacts are there.
    MetadataConnectionError: an unusable record.
  """
  output_dir = os.path.abspath(output_dir)
  default = os.path.join(output_dir, SQLITE_FILE)
  if given is not None and sqlite_path(given) == default:
    given = None
  before = recorded(output_dir)
  if given is None:
    return before
  if before is not None and describe(before) != describe(given):
    raise ValueError(f'{output_dir} records its runs in {describe(before)} ({RECORD_FILE}), not '
                     f'{describe(given)}: give that store or another --output_dir')
  if before is None and os.path.isfile(default):
    raise ValueError(f'{output_dir} holds runs recorded in its {SQLITE_FILE}: a run with ML '
                     f'Metadata at {describe(given)} needs another --output_dir')
  return given


_PASSWORD_TEXT = re.compile(r'password: "(?:[^"\\]|\\.)*"')


class _HidePasswords(logging.Filter):
  """Masks the `password: "..."` of a text-format MySQL config in a log record (TFX's
  LocalDagRunner logs its whole connection config at INFO)."""

  def filter(self, record: logging.LogRecord) -> bool:
    try:
      message = record.getMessage()
    except Exception:  # pylint: disable=broad-except  # a bad record is the handler's to report
      return True
    if 'password' in message:
      record.msg, record.args = _PASSWORD_TEXT.sub('password: "(hidden)"', message), None
    return True


_FILTER = _HidePasswords()


def hide_passwords_in_logs() -> None:
  """Keeps MySQL passwords out of this process's log (the run's log file): masks them in what
  absl's logger (TFX's) logs and in whatever reaches the root logger's handlers. Idempotent."""
  import absl.logging  # pylint: disable=import-outside-toplevel
  loggers = [logging.getLogger('absl'), absl.logging.get_absl_logger()]
  handlers = list(logging.getLogger().handlers) + [absl.logging.get_absl_handler()]
  for target in loggers + handlers:
    if _FILTER not in target.filters:
      target.addFilter(_FILTER)
