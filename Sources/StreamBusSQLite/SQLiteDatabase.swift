import CSQLite3

/// One connection to an SQLite database file, over the system libsqlite3.
///
/// Not thread-safe by design: a connection has exactly one owner (for the Raft storage, the
/// driver actor of one node), so the connection is opened with `SQLITE_OPEN_NOMUTEX` and the type
/// is explicitly not `Sendable`. Use one connection per thread of control instead of sharing.
///
/// Opening applies and then reads back the durability pragmas of `Configuration`, so a build or
/// file system that silently refuses WAL or `synchronous=FULL` fails loudly at open.
public final class SQLiteDatabase {
  /// Flags for `sqlite3_open_v2`. The wrapper always adds `NOMUTEX` (one owner) and extended
  /// result codes.
  public struct OpenFlags: OptionSet, Sendable {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }

    public static let readOnly = OpenFlags(rawValue: SQLITE_OPEN_READONLY)
    public static let readWrite = OpenFlags(rawValue: SQLITE_OPEN_READWRITE)
    public static let create = OpenFlags(rawValue: SQLITE_OPEN_CREATE)
    /// Refuse to open the database through a symbolic link.
    public static let noFollow = OpenFlags(rawValue: SQLITE_OPEN_NOFOLLOW)
  }

  public enum JournalMode: String, Sendable {
    /// Write-ahead log: one sequential append + fsync per commit, readers do not block the writer.
    case wal
    /// Rollback journal; kept for tools that must not leave -wal/-shm files behind.
    case delete
    /// The only journal mode an in-memory database (":memory:") reports.
    case memory
  }

  /// `PRAGMA synchronous` levels.
  public enum Synchronous: Int64, Sendable {
    case off = 0
    /// In WAL mode NORMAL syncs the WAL only at checkpoints, so a committed transaction can be lost
    /// on power failure or OS crash. A Raft node that acknowledged such an entry (vote granted,
    /// append acknowledged) would then break the protocol's safety. Never use it for Raft state.
    case normal = 1
    /// In WAL mode FULL syncs the WAL at every commit: a commit that returned is durable.
    case full = 2
    case extra = 3
  }

  public struct Configuration: Sendable {
    public var journalMode: JournalMode
    public var synchronous: Synchronous
    public var foreignKeys: Bool
    /// How long a statement waits for another connection's lock before failing with SQLITE_BUSY.
    public var busyTimeoutMs: Int32

    public init(
      journalMode: JournalMode = .wal, synchronous: Synchronous = .full, foreignKeys: Bool = true,
      busyTimeoutMs: Int32 = 5_000
    ) {
      self.journalMode = journalMode
      self.synchronous = synchronous
      self.foreignKeys = foreignKeys
      self.busyTimeoutMs = busyTimeoutMs
    }

    /// WAL, `synchronous=FULL`, foreign keys on, 5 s busy timeout: the durable default.
    public static let durable = Configuration()
  }

  /// How `transaction` starts its transaction.
  public enum TransactionKind: Sendable {
    /// Takes the write lock at BEGIN, so a busy database fails (or waits) up front and never
    /// half-way through the body when a read would have to be upgraded.
    case immediate
    case deferred
  }

  public let path: String
  public let configuration: Configuration
  /// nil once closed.
  private(set) var handle: OpaquePointer?
  private var controlStatements: [ControlStatement: OpaquePointer] = [:]

  private enum ControlStatement: String {
    case beginImmediate = "BEGIN IMMEDIATE"
    case beginDeferred = "BEGIN DEFERRED"
    case commit = "COMMIT"
    case rollback = "ROLLBACK"
  }

  /// Opens (and with `.create`, creates) the database at `path` and applies `configuration`.
  public init(
    path: String, flags: OpenFlags = [.readWrite, .create],
    configuration: Configuration = .durable
  ) throws {
    self.path = path
    self.configuration = configuration
    var connection: OpaquePointer?
    let openFlags = flags.rawValue | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE
    let result = sqlite3_open_v2(path, &connection, openFlags, nil)
    guard result == SQLITE_OK, let connection else {
      let error = SQLiteError(
        connection: connection, resultCode: result, sql: nil)
      // sqlite3_open_v2 allocates a handle even when it fails; it must still be released.
      sqlite3_close_v2(connection)
      throw SQLiteError(
        code: error.code, extendedCode: error.extendedCode,
        message: "cannot open database at \(path): \(error.message)")
    }
    handle = connection
    sqlite3_extended_result_codes(connection, 1)
    do {
      try applyConfiguration(readOnly: flags.contains(.readOnly))
    } catch {
      close()
      throw error
    }
  }

  deinit {
    close()
  }

  public var isOpen: Bool { handle != nil }

  /// Version of the libsqlite3 the process runs with, e.g. "3.40.1".
  public static var libraryVersion: String { String(cString: sqlite3_libversion()) }

  /// True between BEGIN and COMMIT/ROLLBACK.
  public var isInTransaction: Bool {
    guard let handle else { return false }
    return sqlite3_get_autocommit(handle) == 0
  }

  /// Rows changed by the most recent INSERT, UPDATE or DELETE.
  public var changes: Int {
    guard let handle else { return 0 }
    return Int(sqlite3_changes64(handle))
  }

  public var lastInsertRowID: Int64 {
    guard let handle else { return 0 }
    return sqlite3_last_insert_rowid(handle)
  }

  /// Closes the connection. Idempotent. Statements still alive become unusable (their methods
  /// throw `SQLITE_MISUSE`); SQLite frees the connection once the last of them is released.
  public func close() {
    guard let handle else { return }
    for statement in controlStatements.values {
      sqlite3_finalize(statement)
    }
    controlStatements = [:]
    // close_v2 never fails with BUSY: with live statements it defers the close until they finish.
    sqlite3_close_v2(handle)
    self.handle = nil
  }

  /// Runs one or more SQL statements separated by semicolons, discarding any rows.
  public func execute(_ sql: String) throws {
    let handle = try openHandle(sql: sql)
    var errorText: UnsafeMutablePointer<CChar>?
    let result = sqlite3_exec(handle, sql, nil, nil, &errorText)
    if result != SQLITE_OK {
      var error = SQLiteError(connection: handle, resultCode: result, sql: sql)
      if let errorText {
        error.message = String(cString: errorText)
      }
      sqlite3_free(errorText)
      throw error
    }
  }

  /// Runs one statement with `bindings` (parameters 1...n) to completion, discarding any rows.
  public func run(_ sql: String, _ bindings: [SQLiteValue] = []) throws {
    let statement = try prepare(sql)
    try statement.bind(bindings)
    while try statement.step() {}
  }

  /// Runs one statement with `bindings` and returns all its rows.
  public func query(_ sql: String, _ bindings: [SQLiteValue] = []) throws -> [[SQLiteValue]] {
    let statement = try prepare(sql)
    try statement.bind(bindings)
    var rows: [[SQLiteValue]] = []
    while try statement.step() {
      rows.append((0..<statement.columnCount).map { statement.column($0) })
    }
    return rows
  }

  /// Compiles exactly one SQL statement. Keep the result to reuse it (bind, step, reset).
  public func prepare(_ sql: String) throws -> Statement {
    try Statement(database: self, sql: sql)
  }

  /// Runs `body` in one transaction: BEGIN IMMEDIATE (by default), COMMIT when `body` returns,
  /// ROLLBACK when it throws (the body's error is rethrown). Transactions do not nest.
  @discardableResult
  public func transaction<Result>(
    _ kind: TransactionKind = .immediate, _ body: () throws -> Result
  ) throws -> Result {
    precondition(!isInTransaction, "SQLiteDatabase.transaction does not nest")
    try runControl(kind == .immediate ? .beginImmediate : .beginDeferred)
    do {
      let result = try body()
      try runControl(.commit)
      return result
    } catch {
      // A failed COMMIT (SQLITE_BUSY, I/O error) may leave the transaction open, or SQLite may
      // already have rolled it back; only roll back what is still open.
      if isInTransaction {
        try? runControl(.rollback)
      }
      throw error
    }
  }

  // MARK: Pragmas

  /// Reads `PRAGMA name` as an integer; nil when the pragma returns no row.
  public func pragmaInteger(_ name: String) throws -> Int64? {
    try pragmaValue(name).flatMap(\.integerValue)
  }

  /// Reads `PRAGMA name` as text; nil when the pragma returns no row.
  public func pragmaText(_ name: String) throws -> String? {
    try pragmaValue(name).flatMap(\.textValue)
  }

  /// Runs `PRAGMA name = value` and returns the first column of the first row, if the pragma
  /// reports one (journal_mode reports the mode actually in effect).
  /// `value` must be a plain word or integer: pragma values cannot be bound as parameters.
  @discardableResult
  public func setPragma(_ name: String, _ value: String) throws -> SQLiteValue? {
    precondition(Self.isPlainWord(name), "pragma name must be an identifier: \(name)")
    precondition(Self.isPlainWord(value, allowSign: true), "pragma value must be a word: \(value)")
    return try query("PRAGMA \(name) = \(value)").first?.first
  }

  private func pragmaValue(_ name: String) throws -> SQLiteValue? {
    precondition(Self.isPlainWord(name), "pragma name must be an identifier: \(name)")
    return try query("PRAGMA \(name)").first?.first
  }

  /// Copies the WAL into the database file and truncates the WAL (a no-op outside WAL mode).
  public func checkpoint() throws {
    let handle = try openHandle(sql: nil)
    let result = sqlite3_wal_checkpoint_v2(handle, nil, SQLITE_CHECKPOINT_TRUNCATE, nil, nil)
    guard result == SQLITE_OK else {
      throw SQLiteError(connection: handle, resultCode: result, sql: "wal_checkpoint(TRUNCATE)")
    }
  }

  // MARK: Internals

  func openHandle(sql: String?) throws -> OpaquePointer {
    guard let handle else {
      throw SQLiteError(code: SQLITE_MISUSE, message: "database \(path) is closed", sql: sql)
    }
    return handle
  }

  private func applyConfiguration(readOnly: Bool) throws {
    let handle = try openHandle(sql: nil)
    let timeoutResult = sqlite3_busy_timeout(handle, configuration.busyTimeoutMs)
    guard timeoutResult == SQLITE_OK else {
      throw SQLiteError(connection: handle, resultCode: timeoutResult, sql: nil)
    }
    if !readOnly {
      let mode = try setPragma("journal_mode", configuration.journalMode.rawValue)?.textValue
      guard mode?.lowercased() == configuration.journalMode.rawValue else {
        throw configurationError(
          "journal_mode is \(mode ?? "unknown") after requesting \(configuration.journalMode)")
      }
    }
    try setPragma("synchronous", String(configuration.synchronous.rawValue))
    try setPragma("foreign_keys", configuration.foreignKeys ? "1" : "0")
    // Read everything back: a pragma SQLite does not know, or cannot honour, is silently ignored.
    let synchronous = try pragmaInteger("synchronous")
    guard synchronous == configuration.synchronous.rawValue else {
      throw configurationError(
        "synchronous is \(synchronous.map(String.init) ?? "unset") after requesting "
          + "\(configuration.synchronous)")
    }
    let foreignKeys = try pragmaInteger("foreign_keys")
    guard foreignKeys == (configuration.foreignKeys ? 1 : 0) else {
      throw configurationError("foreign_keys could not be set to \(configuration.foreignKeys)")
    }
    let busyTimeout = try pragmaInteger("busy_timeout")
    guard busyTimeout == Int64(configuration.busyTimeoutMs) else {
      throw configurationError("busy_timeout could not be set to \(configuration.busyTimeoutMs)")
    }
  }

  private func configurationError(_ message: String) -> SQLiteError {
    SQLiteError(code: SQLITE_ERROR, message: "database \(path): \(message)")
  }

  private func runControl(_ control: ControlStatement) throws {
    let handle = try openHandle(sql: control.rawValue)
    let statement: OpaquePointer
    if let cached = controlStatements[control] {
      statement = cached
    } else {
      var prepared: OpaquePointer?
      let result = sqlite3_prepare_v3(
        handle, control.rawValue, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &prepared, nil)
      guard result == SQLITE_OK, let prepared else {
        throw SQLiteError(connection: handle, resultCode: result, sql: control.rawValue)
      }
      controlStatements[control] = prepared
      statement = prepared
    }
    let result = sqlite3_step(statement)
    sqlite3_reset(statement)
    guard result == SQLITE_DONE else {
      throw SQLiteError(connection: handle, resultCode: result, sql: control.rawValue)
    }
  }

  private static func isPlainWord(_ text: String, allowSign: Bool = false) -> Bool {
    var characters = Substring(text)
    if allowSign, characters.first == "-" {
      characters = characters.dropFirst()
    }
    return !characters.isEmpty
      && characters.allSatisfy { $0 == "_" || ($0.isASCII && ($0.isLetter || $0.isNumber)) }
  }
}

/// One connection per owner: see the type's documentation.
@available(*, unavailable)
extension SQLiteDatabase: Sendable {}
