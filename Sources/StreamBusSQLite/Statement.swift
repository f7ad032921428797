import CSQLite3

/// A compiled SQL statement of one `SQLiteDatabase`.
///
/// Parameters and columns use SQLite's numbering: parameters from 1, columns from 0. Bound
/// values are copied into SQLite (`SQLITE_TRANSIENT`), so the Swift values may go away right
/// after binding. Like its database, a statement has one owner and is not `Sendable`.
public final class Statement {
  /// The database stays alive as long as any of its statements does.
  public let database: SQLiteDatabase
  public let sql: String
  private let handle: OpaquePointer

  init(database: SQLiteDatabase, sql: String) throws {
    let connection = try database.openHandle(sql: sql)
    var prepared: OpaquePointer?
    var hasTrailingStatement = false
    let result = sql.withCString { text in
      var tail: UnsafePointer<CChar>?
      let prepareResult = sqlite3_prepare_v3(
        connection, text, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &prepared, &tail)
      hasTrailingStatement = tail.map(Self.containsStatement) ?? false
      return prepareResult
    }
    guard result == SQLITE_OK else {
      throw SQLiteError(connection: connection, resultCode: result, sql: sql)
    }
    guard let prepared else {
      throw SQLiteError(code: SQLITE_MISUSE, message: "SQL contains no statement", sql: sql)
    }
    // step() would silently ignore a second statement; refuse it instead.
    guard !hasTrailingStatement else {
      sqlite3_finalize(prepared)
      throw SQLiteError(
        code: SQLITE_MISUSE, message: "prepare accepts exactly one statement; use execute",
        sql: sql)
    }
    self.database = database
    self.sql = sql
    self.handle = prepared
  }

  deinit {
    sqlite3_finalize(handle)
  }

  // MARK: Binding

  public var parameterCount: Int32 { sqlite3_bind_parameter_count(handle) }

  public func bind(_ value: Int64, at index: Int32) throws {
    try check(sqlite3_bind_int64(handle, index, value))
  }

  public func bind(_ value: Int, at index: Int32) throws {
    try bind(Int64(value), at: index)
  }

  public func bind(_ value: Double, at index: Int32) throws {
    try check(sqlite3_bind_double(handle, index, value))
  }

  public func bind(_ text: String, at index: Int32) throws {
    var text = text
    let result = text.withUTF8 { bytes -> Int32 in
      // An empty buffer may have no base address, and a null pointer binds NULL, not "".
      guard let base = bytes.baseAddress, !bytes.isEmpty else {
        return sqlite3_bind_text(handle, index, "", 0, Self.transient)
      }
      return base.withMemoryRebound(to: CChar.self, capacity: bytes.count) {
        sqlite3_bind_text64(
          handle, index, $0, UInt64(bytes.count), Self.transient, UInt8(SQLITE_UTF8))
      }
    }
    try check(result)
  }

  public func bind(blob: [UInt8], at index: Int32) throws {
    let result = blob.withUnsafeBytes { bytes -> Int32 in
      // A null pointer would bind NULL; an empty blob must stay a (zero-length) blob.
      guard let base = bytes.baseAddress, !bytes.isEmpty else {
        return sqlite3_bind_zeroblob(handle, index, 0)
      }
      return sqlite3_bind_blob64(handle, index, base, UInt64(bytes.count), Self.transient)
    }
    try check(result)
  }

  public func bindNull(at index: Int32) throws {
    try check(sqlite3_bind_null(handle, index))
  }

  public func bind(_ value: SQLiteValue, at index: Int32) throws {
    switch value {
    case .integer(let integer): try bind(integer, at: index)
    case .real(let real): try bind(real, at: index)
    case .text(let text): try bind(text, at: index)
    case .blob(let blob): try bind(blob: blob, at: index)
    case .null: try bindNull(at: index)
    }
  }

  /// Binds `values` to parameters 1...values.count.
  public func bind(_ values: [SQLiteValue]) throws {
    guard values.count <= Int(parameterCount) else {
      throw SQLiteError(
        code: SQLITE_RANGE,
        message: "\(values.count) values for \(parameterCount) parameters", sql: sql)
    }
    for (offset, value) in values.enumerated() {
      try bind(value, at: Int32(offset + 1))
    }
  }

  // MARK: Stepping

  /// Advances to the next row: true when a row is available, false when the statement is done
  /// (the statement is then reset, ready to run again with the same bindings).
  /// On error the statement is reset too, so it releases its locks and can be reused.
  public func step() throws -> Bool {
    _ = try database.openHandle(sql: sql)
    let result = sqlite3_step(handle)
    switch result {
    case SQLITE_ROW:
      return true
    case SQLITE_DONE:
      sqlite3_reset(handle)
      return false
    default:
      let error = SQLiteError(connection: sqlite3_db_handle(handle), resultCode: result, sql: sql)
      sqlite3_reset(handle)
      throw error
    }
  }

  /// Steps to completion (for INSERT/UPDATE/DELETE/DDL), ignoring any rows.
  public func run() throws {
    while try step() {}
  }

  /// Rewinds to before the first row, keeping bindings.
  public func reset() {
    sqlite3_reset(handle)
  }

  /// Rewinds and sets all parameters back to NULL.
  public func resetAndClearBindings() {
    sqlite3_reset(handle)
    sqlite3_clear_bindings(handle)
  }

  // MARK: Columns of the current row

  public var columnCount: Int { Int(sqlite3_column_count(handle)) }

  public func columnName(_ index: Int) -> String {
    guard let name = sqlite3_column_name(handle, Int32(index)) else { return "" }
    return String(cString: name)
  }

  public func columnType(_ index: Int) -> SQLiteColumnType {
    switch sqlite3_column_type(handle, Int32(index)) {
    case SQLITE_INTEGER: return .integer
    case SQLITE_FLOAT: return .real
    case SQLITE_TEXT: return .text
    case SQLITE_BLOB: return .blob
    default: return .null
    }
  }

  public func columnIsNull(_ index: Int) -> Bool {
    columnType(index) == .null
  }

  public func columnInt64(_ index: Int) -> Int64 {
    sqlite3_column_int64(handle, Int32(index))
  }

  public func columnDouble(_ index: Int) -> Double {
    sqlite3_column_double(handle, Int32(index))
  }

  public func columnText(_ index: Int) -> String {
    // Fetch the pointer before the length: asking for the length first can trigger a conversion.
    guard let text = sqlite3_column_text(handle, Int32(index)) else { return "" }
    let count = Int(sqlite3_column_bytes(handle, Int32(index)))
    return String(decoding: UnsafeBufferPointer(start: text, count: count), as: UTF8.self)
  }

  public func columnBlob(_ index: Int) -> [UInt8] {
    guard let bytes = sqlite3_column_blob(handle, Int32(index)) else { return [] }
    let count = Int(sqlite3_column_bytes(handle, Int32(index)))
    return [UInt8](UnsafeRawBufferPointer(start: bytes, count: count))
  }

  public func column(_ index: Int) -> SQLiteValue {
    switch columnType(index) {
    case .integer: return .integer(columnInt64(index))
    case .real: return .real(columnDouble(index))
    case .text: return .text(columnText(index))
    case .blob: return .blob(columnBlob(index))
    case .null: return .null
    }
  }

  // MARK: Internals

  private func check(_ result: Int32) throws {
    guard result == SQLITE_OK else {
      throw SQLiteError(connection: sqlite3_db_handle(handle), resultCode: result, sql: sql)
    }
  }

  /// SQLITE_TRANSIENT: SQLite copies bound values before the bind call returns.
  private static var transient: sqlite3_destructor_type {
    unsafeBitCast(-1, to: sqlite3_destructor_type.self)
  }

  /// True when `text` holds more than whitespace and comments.
  private static func containsStatement(_ text: UnsafePointer<CChar>) -> Bool {
    var cursor = text
    while cursor.pointee != 0 {
      let character = UInt8(bitPattern: cursor.pointee)
      if character == UInt8(ascii: " ") || character == UInt8(ascii: "\n")
        || character == UInt8(ascii: "\t") || character == UInt8(ascii: "\r")
        || character == UInt8(ascii: ";")
      {
        cursor += 1
        continue
      }
      if character == UInt8(ascii: "-"), (cursor + 1).pointee == CChar(UInt8(ascii: "-")) {
        while cursor.pointee != 0, cursor.pointee != CChar(UInt8(ascii: "\n")) {
          cursor += 1
        }
        continue
      }
      return true
    }
    return false
  }
}

@available(*, unavailable)
extension Statement: Sendable {}
