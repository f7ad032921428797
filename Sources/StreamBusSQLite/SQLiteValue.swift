/// A value SQLite can store in a column or bind to a parameter.
public enum SQLiteValue: Sendable, Hashable {
  case integer(Int64)
  case real(Double)
  case text(String)
  case blob([UInt8])
  case null

  public var integerValue: Int64? {
    if case .integer(let value) = self { return value }
    return nil
  }

  public var realValue: Double? {
    if case .real(let value) = self { return value }
    return nil
  }

  public var textValue: String? {
    if case .text(let value) = self { return value }
    return nil
  }

  public var blobValue: [UInt8]? {
    if case .blob(let value) = self { return value }
    return nil
  }

  public var isNull: Bool { self == .null }
}

/// The storage class of a column value in the current row.
public enum SQLiteColumnType: Sendable, Equatable {
  case integer
  case real
  case text
  case blob
  case null
}
