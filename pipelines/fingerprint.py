"""Content fingerprints of a run's code, curated files and raw data, for TFX's cache key.

TFX keys a component's cache on its exec properties and input artifacts, and reads user code only
through a `module_file`. This project names code by module path (`preprocessing_fn=`, `run_fn=`,
the ExampleGens' executors and line parsers, TFMA metric modules), imports curated files by path
(the schema) and lets ExampleGen fingerprint its input by size and modification time. The factory
(`pipelines.factory.create_pipeline`) therefore adds the digests computed here to each component's
exec properties under `FINGERPRINT_KEY` (`add_to_cache_key`), where TFX's cache key sees them.

- `code_fingerprint(paths)`: SHA-256 over the code that `paths` name. A module path (`pkg.mod`)
  stands for the whole module; an attribute path (`pkg.mod.fn`, `pkg.mod.Class`) for the
  definition of that attribute and the module-level definitions it uses, transitively, plus the
  module's top-level statements that bind no name (they run on import). Project modules reached
  through imports (packages `PROJECT_PACKAGES`) are followed the same way: `from m import f` as `f`
  of `m`, `import m` as the whole of `m`, and every parent package's `__init__`. Modules are found
  with `importlib` specs without importing them, and hashed as their syntax trees (so comments and
  layout do not count) under their module names: no absolute path or time enters the digest, which
  is the same on every machine and checkout of the same code.
- `file_fingerprint(path)`: SHA-256 of a curated file's bytes (a folder: of its files' relative
  names and bytes).
- `data_fingerprint(path, cache_dir)`: the same for a raw data file or folder, remembered in
  `<cache_dir>/data_digests.json` per (path, size, modification time), so that a file is read
  once until it changes.
- `input_digests(split_files, ...)`: {split: digest} of a run's raw inputs, reusing the dataset
  registry's SHA-256 of a canonical file that `preprocessing.datasets.resolve` verified.

Not seen: code reached only through a module path in a string that the factory does not pass here
(e.g. `import_module(name)` inside project code), installed libraries (TFX, TensorFlow, ...),
files a component reads that are not named here, and remote (`gs://...`) inputs, left to TFX.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.machinery
import importlib.util
import json
import os
import re
import tempfile
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from preprocessing import datasets

PROJECT_PACKAGES = ('components', 'model_fns', 'pipelines', 'preprocessing', 'beam_runner')
FINGERPRINT_KEY = 'official_tfx_fingerprint'  # the exec property add_to_cache_key sets
DIGEST_CACHE_FILE = 'data_digests.json'
_SCHEME = b'official-tfx code fingerprint 1\n'
_CHUNK = 1 << 20
_DOTTED = re.compile(r'^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$')

# A unit of code: (module name, top-level attribute name or None for the whole module).
_Unit = Tuple[str, Optional[str]]


def _is_remote(path: str) -> bool:
  return '://' in path


# ---------------------------------------------------------------------------------------------
# Code.


def _locate(name: str) -> Optional[importlib.machinery.ModuleSpec]:
  """The spec of module `name`, found without importing it or its parents; None if not found."""
  parts = name.split('.')
  try:
    spec = importlib.util.find_spec(parts[0])  # a top-level find_spec imports nothing
  except (ImportError, ValueError):
    return None
  for i in range(1, len(parts)):
    if spec is None or not spec.submodule_search_locations:
      return None
    spec = importlib.machinery.PathFinder.find_spec('.'.join(parts[:i + 1]),
                                                    list(spec.submodule_search_locations))
  return spec


class _Module:
  """A located module's source, parsed once: its top-level definitions, import bindings and, per
  top-level statement, its syntax-tree dump, the names it uses and the imports inside it."""

  def __init__(self, name: str, is_package: bool, raw: Optional[bytes], is_source: bool,
               packages: Sequence[str]):
    self.name = name
    self._packages = tuple(packages)
    self.found = raw is not None
    self.is_package = is_package
    self.raw = raw or b''
    tree = None
    if is_source:
      try:
        tree = ast.parse(self.raw, filename=name)
      except (SyntaxError, ValueError):
        tree = None  # hashed as bytes; running it fails anyway
    self.parsed = tree is not None
    self.statements: List[ast.stmt] = list(tree.body) if tree else []
    self.dumps: List[str] = []  # ast.dump of each statement (no positions: layout-free)
    self.used: List[Set[str]] = []  # the names each statement reads or writes
    self.imports: List[List[_Unit]] = []  # the units imported anywhere inside each statement
    self.defs: Dict[str, List[int]] = {}  # top-level name -> indexes of the statements binding it
    self.always: List[int] = []  # statements that bind no name (or bind unknowably): always kept
    self.bindings: Dict[str, List[_Unit]] = {}  # name bound by a top-level import -> its units
    for index, statement in enumerate(self.statements):
      self.dumps.append(ast.dump(statement))
      names, imports = set(), []
      for node in ast.walk(statement):
        if isinstance(node, ast.Name):
          names.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)) and node is not statement:
          imports.extend(u for _, units in self._import_bindings(node) for u in units)
      self.used.append(names)
      self.imports.append(imports)
      if isinstance(statement, (ast.Import, ast.ImportFrom)):
        for bound, units in self._import_bindings(statement):
          if bound == '*':
            self.always.append(index)
            self.imports[index].extend(units)
          else:
            self.bindings.setdefault(bound, []).extend(units)
        continue
      bound_names = _bound_names(statement)
      if bound_names is None:
        self.always.append(index)
      for bound in bound_names or ():
        self.defs.setdefault(bound, []).append(index)
    if self.statements and _is_docstring(self.statements[0]) and 0 in self.always:
      self.always.remove(0)

  def _resolve_relative(self, module: Optional[str], level: int) -> str:
    if not level:
      return module or ''
    base = self.name.split('.')
    if not self.is_package:
      base = base[:-1]
    base = base[:len(base) - (level - 1)] if level > 1 else base
    return '.'.join(base + ([module] if module else []))

  def _import_bindings(self, node: ast.stmt) -> List[Tuple[str, List[_Unit]]]:
    """(bound name, the units it refers to) of each alias of an import statement."""
    result = []
    if isinstance(node, ast.Import):
      for alias in node.names:
        if alias.asname:
          result.append((alias.asname, [(alias.name, None)]))
        else:  # `import a.b.c` binds `a` and runs a, a.b and a.b.c
          result.append((alias.name.split('.')[0], [(alias.name, None)]))
      return result
    module = self._resolve_relative(node.module, node.level)
    for alias in node.names:
      if alias.name == '*':
        result.append(('*', [(module, None)]))
        continue
      target = f'{module}.{alias.name}' if module else alias.name
      if module.split('.')[0] not in self._packages:  # not followed: no need to tell which
        unit = (module, alias.name)
      else:
        unit = (target, None) if _locate(target) is not None else (module, alias.name)
      result.append((alias.asname or alias.name, [unit]))
    return result


# (module name, is package, packages, sha256 of the source) -> _Module: a module's parse is reused
# while its content is the same (create_pipeline fingerprints several overlapping sets of code).
_PARSED: Dict[Tuple[str, bool, Tuple[str, ...], str], _Module] = {}


def _load_module(name: str, packages: Sequence[str]) -> _Module:
  spec = _locate(name)
  origin = spec.origin if spec else None
  is_package = bool(spec and spec.submodule_search_locations)
  if spec is None:
    return _Module(name, False, None, False, packages)
  raw = b''
  if origin and os.path.isfile(origin):
    with open(origin, 'rb') as f:
      raw = f.read().replace(b'\r\n', b'\n')
  key = (name, is_package, tuple(packages), hashlib.sha256(raw).hexdigest())
  if key not in _PARSED:
    _PARSED[key] = _Module(name, is_package, raw, bool(origin and origin.endswith('.py')),
                           packages)
  return _PARSED[key]


def _is_docstring(statement: ast.stmt) -> bool:
  return (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)
          and isinstance(statement.value.value, str))


def _target_names(target: ast.expr) -> Optional[List[str]]:
  """Names an assignment target binds at module level; None when it binds none knowably."""
  if isinstance(target, ast.Name):
    return [target.id]
  if isinstance(target, (ast.Tuple, ast.List)):
    names = []
    for element in target.elts:
      inner = _target_names(element.value if isinstance(element, ast.Starred) else element)
      if inner is None:
        return None
      names.extend(inner)
    return names
  return None  # `x.y = ...`, `x[0] = ...`: a side effect on another object


def _bound_names(statement: ast.stmt) -> Optional[List[str]]:
  """The top-level names `statement` defines, or None for a statement kept whatever is used."""
  if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
    return [statement.name]
  if isinstance(statement, ast.Assign):
    names = []
    for target in statement.targets:
      inner = _target_names(target)
      if inner is None:
        return None
      names.extend(inner)
    return names
  if isinstance(statement, (ast.AnnAssign, ast.AugAssign)):
    return _target_names(statement.target)
  return None


class _Hasher:
  """Walks the units reachable from the named code and digests each one."""

  def __init__(self, packages: Sequence[str]):
    self._packages = tuple(packages)
    self._modules: Dict[str, _Module] = {}
    self.digests: Dict[str, str] = {}  # unit key -> digest

  def module(self, name: str) -> _Module:
    if name not in self._modules:
      self._modules[name] = _load_module(name, self._packages)
    return self._modules[name]

  def in_project(self, module: str) -> bool:
    return module.split('.')[0] in self._packages

  def named_unit(self, path: str) -> _Unit:
    """The unit a module or attribute path names (longest prefix that is a module).

    Raises:
      ModuleNotFoundError: no prefix of `path` is a module.
    """
    parts = path.split('.')
    for end in range(len(parts), 0, -1):
      if _locate('.'.join(parts[:end])) is not None:
        module = '.'.join(parts[:end])
        return (module, parts[end]) if end < len(parts) else (module, None)
    raise ModuleNotFoundError(f'no module found for {path!r} (sys.path: the project\'s root '
                              'must be on it)')

  def visit(self, unit: _Unit, named: bool = False) -> None:
    module_name, attribute = unit
    if not module_name or (not named and not self.in_project(module_name)):
      return
    key = module_name if attribute is None else f'{module_name}:{attribute}'
    if key in self.digests:
      return
    module = self.module(module_name)
    if attribute is not None and attribute not in module.defs:
      if attribute in module.bindings:  # a name the module imports (a re-export): follow it
        self.digests[key] = hashlib.sha256(repr(module.bindings[attribute]).encode()).hexdigest()
        for target in module.bindings[attribute]:
          self.visit(target)
        self._visit_parents(module_name)
        return
      self.visit((module_name, None), named)  # defined dynamically: the whole module
      return
    if not module.found:
      self.digests[key] = 'missing'
      return
    if attribute is None:
      body = '\n'.join(module.dumps) if module.parsed else module.raw.hex()
      self.digests[key] = hashlib.sha256(body.encode()).hexdigest()
      deps = [u for units in module.bindings.values() for u in units]
      deps += [u for units in module.imports for u in units]
    else:
      selected = set(module.defs[attribute]) | set(module.always)
      used_bindings: Set[str] = set()
      frontier = sorted(selected)
      while frontier:
        names = set().union(*(module.used[i] for i in frontier))
        frontier = []
        for name in sorted(names):
          for index in module.defs.get(name, ()):
            if index not in selected:
              selected.add(index)
              frontier.append(index)
          if name in module.bindings:
            used_bindings.add(name)
      body = '\n'.join([module.dumps[i] for i in sorted(selected)]
                       + [f'{name} -> {module.bindings[name]!r}' for name in sorted(used_bindings)])
      self.digests[key] = hashlib.sha256(body.encode()).hexdigest()
      deps = [u for name in sorted(used_bindings) for u in module.bindings[name]]
      deps += [u for i in sorted(selected) for u in module.imports[i]]
    self._visit_parents(module_name)
    for dep in deps:
      self.visit(dep)

  def _visit_parents(self, module_name: str) -> None:
    parts = module_name.split('.')
    for end in range(1, len(parts)):
      self.visit(('.'.join(parts[:end]), None))


def code_fingerprint(module_paths: Iterable[str],
                     packages: Sequence[str] = PROJECT_PACKAGES) -> str:
  """SHA-256 (64 hex characters) of the code that `module_paths` name; see the module docstring.

  Args:
    module_paths: module paths (`preprocessing.census`) or attribute paths
      (`preprocessing.census.preprocessing_fn`); each is hashed even outside `packages`.
    packages: top-level packages whose modules are followed through imports.

  Returns:
    The same digest for the same code whatever the order of `module_paths`, the machine or the
    checkout's location; another digest when a named definition, a definition it uses or a
    project module it imports changes (beyond comments and layout).

  Raises:
    ModuleNotFoundError: a path names no module on sys.path.
  """
  hasher = _Hasher(packages)
  for path in sorted(set(module_paths)):
    hasher.visit(hasher.named_unit(path), named=True)
  digest = hashlib.sha256(_SCHEME)
  for key in sorted(hasher.digests):
    digest.update(f'{key}\0{hasher.digests[key]}\n'.encode())
  return digest.hexdigest()


def is_project_code(path: Any, packages: Sequence[str] = PROJECT_PACKAGES) -> bool:
  """Whether `path` is a string naming a module or attribute of a project package."""
  return (isinstance(path, str) and bool(_DOTTED.match(path))
          and path.split('.')[0] in packages)


def component_code(component: Any, settings: Optional[Mapping[str, Any]] = None,
                   packages: Sequence[str] = PROJECT_PACKAGES) -> List[str]:
  """The project modules a TFX component runs: the modules of its class, its executor class and,
  for a function-based component (`@component`), the function's; plus every string value of
  `settings` (e.g. an ExampleGen's unpacked custom_config) that names project code
  (`line_parser`, `split_fn`), a value being a string, a list of strings or the JSON of one.
  Sorted; outside `packages`, nothing."""
  found = {type(component).__module__}
  executor_class = getattr(getattr(component, 'EXECUTOR_SPEC', None), 'executor_class', None)
  if executor_class is not None:
    found.add(executor_class.__module__)
    function = getattr(executor_class, '_FUNCTION', None)
    if function is not None:
      found.add(getattr(function, '__module__', ''))
  for value in (settings or {}).values():
    if isinstance(value, str) and value.startswith('['):  # a JSON list of module paths
      try:
        value = json.loads(value)
      except ValueError:
        value = [value]
    values = value if isinstance(value, (list, tuple)) else [value]
    found.update(v for v in values if isinstance(v, str))
  return sorted(p for p in found if is_project_code(p, packages)
                or (isinstance(p, str) and p in packages))


def add_to_cache_key(component: Any, **parts: Any) -> None:
  """Sets exec property FINGERPRINT_KEY of `component` to the JSON of `parts` (sorted keys; None
  and empty parts left out), which TFX's cache key then includes
  (tfx.orchestration.portable.cache_utils.get_cache_context hashes every exec property).

  The property is not declared in the component's spec: TFX's compilers (local IR and KFP v2)
  compile every entry of `exec_properties`, and the executors read the properties they know by
  name, so the others pass through to them unread. Nothing is set when every part is empty.
  """
  kept = {k: v for k, v in parts.items() if v not in (None, {}, [], '')}
  if kept:
    component.exec_properties[FINGERPRINT_KEY] = json.dumps(kept, sort_keys=True,
                                                            separators=(',', ':'))


# ---------------------------------------------------------------------------------------------
# Files and data.


def _sha256_bytes(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(_CHUNK), b''):
      digest.update(chunk)
  return digest.hexdigest()


def _folder_files(folder: str) -> List[Tuple[str, str]]:
  """(relative POSIX name, path) of every file under `folder`, sorted by name (bytes order)."""
  files = []
  for root, dirs, names in os.walk(folder):
    dirs.sort()
    for name in names:
      path = os.path.join(root, name)
      if os.path.isfile(path):
        files.append((os.path.relpath(path, folder).replace(os.sep, '/'), path))
  return sorted(files, key=lambda item: item[0].encode())


def _combine(named_digests: Iterable[Tuple[str, str]]) -> str:
  digest = hashlib.sha256()
  for name, value in named_digests:
    digest.update(f'{name}\0{value}\n'.encode())
  return digest.hexdigest()


def file_fingerprint(path: str) -> Optional[str]:
  """SHA-256 (hex) of a curated file's bytes (schema, vocabulary); for a folder, of its files'
  relative names and bytes. None for a remote URI (gs://...), which is not read here.

  Raises:
    FileNotFoundError: nothing at the local `path`.
  """
  if _is_remote(path):
    return None
  if os.path.isdir(path):
    return _combine((name, _sha256_bytes(p)) for name, p in _folder_files(path))
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: no such file to fingerprint')
  return _sha256_bytes(path)


class _DigestCache:
  """{absolute path: {size, mtime_ns, sha256}} of files and {listing, sha256} of folders, in a
  JSON file; written atomically, merged with what other processes wrote meanwhile."""

  def __init__(self, path: str):
    self._path = path
    self._entries = self._read()
    self._new: Dict[str, Dict[str, Any]] = {}

  def _read(self) -> Dict[str, Dict[str, Any]]:
    try:
      with open(self._path) as f:
        entries = json.load(f)
      return entries if isinstance(entries, dict) else {}
    except (OSError, ValueError):
      return {}

  def get(self, key: str, **state: Any) -> Optional[str]:
    entry = self._new.get(key) or self._entries.get(key)
    if isinstance(entry, dict) and all(entry.get(k) == v for k, v in state.items()):
      return entry.get('sha256')
    return None

  def put(self, key: str, sha256: str, **state: Any) -> None:
    self._new[key] = {**state, 'sha256': sha256}

  def save(self) -> None:
    if not self._new:
      return
    entries = self._read()
    entries.update(self._new)
    entries = {k: v for k, v in entries.items() if os.path.exists(k)}
    os.makedirs(os.path.dirname(self._path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(self._path), prefix='.' + DIGEST_CACHE_FILE)
    with os.fdopen(fd, 'w') as f:
      json.dump(entries, f, indent=0, sort_keys=True)
    os.replace(tmp, self._path)
    self._entries, self._new = entries, {}

  def file_digest(self, path: str) -> str:
    stat = os.stat(path)
    # The inode and the change time too: a file replaced by another of the same size, its
    # modification time set back (`touch -d`, `cp -p`), has a new ctime, which no user can set.
    state = {'size': stat.st_size, 'mtime_ns': stat.st_mtime_ns, 'ctime_ns': stat.st_ctime_ns,
             'inode': stat.st_ino}
    cached = self.get(path, **state)
    if cached is None:
      cached = _sha256_bytes(path)
      self.put(path, cached, **state)
    return cached


def digest_cache_path(cache_dir: Optional[str] = None) -> str:
  """The JSON digest cache of `data_fingerprint`: `<cache_dir>/data_digests.json`, cache_dir
  defaulting to the dataset download cache (preprocessing.datasets.default_cache_dir)."""
  return os.path.join(os.path.abspath(cache_dir or datasets.default_cache_dir()),
                      DIGEST_CACHE_FILE)


def data_fingerprint(path: str, cache_dir: Optional[str] = None) -> Optional[str]:
  """SHA-256 (hex) of a raw data file's bytes (a `.gz` as it is, not inflated), computed once per
  (absolute path, size, modification time, change time, inode) and kept in
  `digest_cache_path(cache_dir)`.

  A folder (an image folder) is hashed over its files' relative names and digests, recursively;
  it is re-hashed only when a file's name, size, times or inode changed. A remote URI
  (gs://...) returns None: ExampleGen's own fingerprint covers it.

  Raises:
    FileNotFoundError: nothing at the local `path`.
    OSError: a file cannot be read.
  """
  if _is_remote(path):
    return None
  path = os.path.abspath(path)
  cache = _DigestCache(digest_cache_path(cache_dir))
  if os.path.isdir(path):
    files = []
    for name, file_path in _folder_files(path):
      stat = os.stat(file_path)
      files.append((name, file_path, stat.st_size,
                    f'{stat.st_mtime_ns} {stat.st_ctime_ns} {stat.st_ino}'))
    listing = _combine((name, f'{size} {mtime}') for name, _, size, mtime in files)
    result = cache.get(path, listing=listing)
    if result is None:
      result = _combine((name, _sha256_bytes(p)) for name, p, _, _ in files)
      cache.put(path, result, listing=listing)
  elif os.path.isfile(path):
    result = cache.file_digest(path)
  else:
    raise FileNotFoundError(f'{path}: no such data file or folder')
  try:
    cache.save()
  except OSError:
    pass  # a read-only cache only costs hashing again next time
  return result


def _registry_file(dataset: datasets.Dataset, path: str
                   ) -> Optional[Tuple[datasets.DataFile, str]]:
  """(the dataset's DataFile that `path` is a copy of, by name, plain or `.gz`; the dataset folder
  holding it) or None."""
  normalized = path.replace(os.sep, '/')
  for data_file in dataset.files:
    for suffix in ('/' + data_file.name, '/' + data_file.name + '.gz'):
      if normalized.endswith(suffix):
        return data_file, path[:len(path) - len(suffix)]
  return None


def _verified_digest(data_file: datasets.DataFile, path: str) -> Optional[str]:
  """The registry checksum that preprocessing.datasets.verify checks `path` against, if SHA-256."""
  if data_file.is_folder:
    return None
  if path.endswith('.gz') and data_file.gz_sha256:
    return data_file.gz_sha256
  return data_file.sha256


def input_digests(split_files: Mapping[str, str], cache_dir: Optional[str] = None,
                  dataset: Optional[datasets.Dataset] = None,
                  canonical: Sequence[str] = ()) -> Dict[str, str]:
  """{split: SHA-256 of what the split's ExampleGen reads} for RunConfig.input_digests.

  Args:
    split_files: split name -> raw data file or folder (local or remote).
    cache_dir: the download cache, home of `data_fingerprint`'s digest cache (default:
      preprocessing.datasets.default_cache_dir()).
    dataset: the run's registered dataset, if any: a split file that is one of its files is read
      with that file's `companion` (MNIST's labels beside the images), whose digest counts too.
    canonical: the splits whose files preprocessing.datasets.resolve verified against `dataset`
      in this run: their registry SHA-256 is used instead of reading them again.

  Returns:
    A digest per split with a local input; remote splits are absent (TFX fingerprints them).

  Raises:
    FileNotFoundError: a local split file (or its companion found in the registry) is missing.
  """
  digests = {}
  for split, path in sorted(split_files.items()):
    if _is_remote(path):
      continue
    files = [(path, split in canonical)]
    match = _registry_file(dataset, path) if dataset else None
    if match and match[0].companion:
      folder = match[1]
      candidates = [os.path.join(folder, match[0].companion + ext) for ext in ('', '.gz')]
      found = [c for c in candidates if os.path.exists(c)]
      if found:
        files.append((found[0], split in canonical))
    parts = []
    for file_path, verified in files:
      known = None
      if verified and dataset:
        registry = _registry_file(dataset, file_path)
        known = _verified_digest(registry[0], file_path) if registry else None
      parts.append((os.path.basename(file_path),
                    known or data_fingerprint(file_path, cache_dir)))
    digests[split] = parts[0][1] if len(parts) == 1 else _combine(parts)
  return digests
