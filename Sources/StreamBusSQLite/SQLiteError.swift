import CSQLite3

/// A failure reported by SQLite (or detected by this wrapper while talking to SQLite).
///
/// `code` is the primary result code (`SQLITE_BUSY`, `SQLITE_CORRUPT`, ...), `extendedCode` the
/// extended one (`SQLITE_IOERR_FSYNC`, ...); `sql` is the statement that failed, when there was one.
public struct SQLiteError: Error, CustomStringConvertible, Sendable, Equatable {
  public var code: Int32
  public var extendedCode: Int32
  public var message: String
  public var sql: String?

  public init(code: Int32, extendedCode: Int32? = nil, message: String, sql: String? = nil) {
    self.code = code & 0xff
    self.extendedCode = extendedCode ?? code
    self.message = message
    self.sql = sql
  }

  /// Builds the error from the connection's most recent failure.
  init(connection: OpaquePointer?, resultCode: Int32, sql: String?) {
    let extended = connection.map { sqlite3_extended_errcode($0) } ?? resultCode
    let message: String
    if let connection, let text = sqlite3_errmsg(connection) {
      message = String(cString: text)
    } else {
      message = String(cString: sqlite3_errstr(resultCode))
    }
    // The connection's recorded code can be stale when the failing call does not record one;
    // the returned code is authoritative for the primary code.
    let extendedCode = (extended & 0xff) == (resultCode & 0xff) ? extended : resultCode
    self.init(code: resultCode, extendedCode: extendedCode, message: message, sql: sql)
  }

  /// SQLite's English name of the primary result code, e.g. "database disk image is malformed".
  public var codeDescription: String {
    String(cString: sqlite3_errstr(code))
  }

  public var isBusy: Bool { code == SQLITE_BUSY || code == SQLITE_LOCKED }
  public var isCorrupt: Bool { code == SQLITE_CORRUPT || code == SQLITE_NOTADB }
  public var isConstraintViolation: Bool { code == SQLITE_CONSTRAINT }

  public var description: String {
    var text = "SQLite error \(code) (extended \(extendedCode), \(codeDescription)): \(message)"
    if let sql {
      text += " [SQL: \(sql)]"
    }
    return text
  }
}
