/// A record batch that cannot be decoded or validated. Thrown for bad bytes from the network
/// or disk; never a crash.
public struct RecordsError: Error, Equatable, CustomStringConvertible {
  /// What kind of problem; a struct over a private enum so new codes can be added.
  public struct Code: Hashable, Sendable, CustomStringConvertible {
    private enum Value: Hashable, Sendable {
      case truncated
      case invalidLength
      case invalidMagic
      case crcMismatch
      case invalidVarint
      case invalidCount
      case malformedRecord
      case unsupportedCompression
    }
    private let value: Value
    private init(_ value: Value) { self.value = value }

    /// The buffer ends before the structure it must hold.
    public static let truncated = Code(.truncated)
    /// A length field is negative, too small, or disagrees with the bytes present.
    public static let invalidLength = Code(.invalidLength)
    /// The magic byte is not 2 (only v2 batches are supported).
    public static let invalidMagic = Code(.invalidMagic)
    /// The stored CRC-32C does not match the bytes.
    public static let crcMismatch = Code(.crcMismatch)
    /// A varint is longer than its type allows or overflows it.
    public static let invalidVarint = Code(.invalidVarint)
    /// A record or header count is negative or larger than the bytes could hold.
    public static let invalidCount = Code(.invalidCount)
    /// A record's fields disagree with its declared length or with the batch header.
    public static let malformedRecord = Code(.malformedRecord)
    /// The batch is compressed with a codec this build does not decode.
    public static let unsupportedCompression = Code(.unsupportedCompression)

    public var description: String {
      switch value {
      case .truncated: "truncated"
      case .invalidLength: "invalidLength"
      case .invalidMagic: "invalidMagic"
      case .crcMismatch: "crcMismatch"
      case .invalidVarint: "invalidVarint"
      case .invalidCount: "invalidCount"
      case .malformedRecord: "malformedRecord"
      case .unsupportedCompression: "unsupportedCompression"
      }
    }
  }

  public let code: Code
  public let message: String

  public init(_ code: Code, _ message: String) {
    self.code = code
    self.message = message
  }

  public var description: String { "\(code): \(message)" }
}
