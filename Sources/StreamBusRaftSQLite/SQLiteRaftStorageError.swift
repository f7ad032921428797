import StreamBusSQLite

/// Why a node's Raft database could not be opened or used.
///
/// Opening never "repairs" anything: a foreign, wrong-node or damaged file is reported and left
/// untouched, because silently starting from an empty log would let the node vote again in a term
/// it already voted in, or forget entries it acknowledged.
public struct SQLiteRaftStorageError: Error, CustomStringConvertible, Sendable {
  public struct Code: Hashable, Sendable, CustomStringConvertible {
    private enum Base: String, Hashable, Sendable {
      case foreignDatabase
      case unsupportedFormatVersion
      case wrongNode
      case wrongCluster
      case corrupt
      case failed
      case closed
      case alreadyOpen
      case fileSystem
      case sqlite
    }

    private let base: Base
    private init(_ base: Base) { self.base = base }

    /// The file is an SQLite database of something else (other application id, or unrelated
    /// tables).
    public static let foreignDatabase = Code(.foreignDatabase)
    /// A StreamBus Raft database written in a format version this build does not read.
    public static let unsupportedFormatVersion = Code(.unsupportedFormatVersion)
    /// The database belongs to another node of the cluster.
    public static let wrongNode = Code(.wrongNode)
    /// The database belongs to another cluster.
    public static let wrongCluster = Code(.wrongCluster)
    /// The file is damaged: not a database, failed `quick_check`/`integrity_check`, or holds
    /// values that break the storage's invariants (gaps in the log, impossible terms, ...).
    public static let corrupt = Code(.corrupt)
    /// An earlier write failed; the storage refuses further use until it is reopened.
    public static let failed = Code(.failed)
    /// `close()` was called.
    public static let closed = Code(.closed)
    /// Another process (or another storage object in this process) has the database open.
    public static let alreadyOpen = Code(.alreadyOpen)
    /// A file-system call outside SQLite failed (lock file, directory sync); see the message.
    public static let fileSystem = Code(.fileSystem)
    /// SQLite reported an error (I/O, busy, full disk, ...); see `underlying`.
    public static let sqlite = Code(.sqlite)

    public var description: String { base.rawValue }
  }

  public var code: Code
  public var message: String
  public var path: String
  public var underlying: SQLiteError?

  public init(code: Code, message: String, path: String, underlying: SQLiteError? = nil) {
    self.code = code
    self.message = message
    self.path = path
    self.underlying = underlying
  }

  public var description: String {
    var text = "Raft storage \(path): \(code): \(message)"
    if let underlying {
      text += " (\(underlying))"
    }
    return text
  }
}
