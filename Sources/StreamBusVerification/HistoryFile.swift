import Foundation

/// JSON lines: a header line (`{"history":1,"topic":...,"startedAt":...}`), then one event per
/// line in recording order. Line-oriented so `grep w3-1041 history.jsonl` finds everything that
/// happened to one value.
public enum HistoryFile {
  public static let formatVersion = 1

  struct Header: Codable {
    var history: Int
    var topic: String
    var startedAt: Date
  }

  public struct FormatError: Error, CustomStringConvertible, Sendable {
    public let description: String
  }

  public static func jsonLines(_ history: History) throws -> Data {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    encoder.dateEncodingStrategy = .iso8601
    var data = try encoder.encode(
      Header(history: formatVersion, topic: history.topic, startedAt: history.startedAt))
    data.append(UInt8(ascii: "\n"))
    for event in history.events {
      data.append(try encoder.encode(event))
      data.append(UInt8(ascii: "\n"))
    }
    return data
  }

  public static func write(_ history: History, to file: URL) throws {
    try jsonLines(history).write(to: file, options: .atomic)
  }

  /// Parses what `jsonLines` wrote; a line that is not a valid event is an error naming it.
  public static func parse(_ data: Data) throws -> History {
    let decoder = JSONDecoder()
    decoder.dateDecodingStrategy = .iso8601
    var lines = data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true)
      .makeIterator()
    guard let headerLine = lines.next() else {
      throw FormatError(description: "history file is empty (no header line)")
    }
    let header: Header
    do {
      header = try decoder.decode(Header.self, from: Data(headerLine))
    } catch {
      throw FormatError(description: "history header line is not valid: \(error)")
    }
    guard header.history == formatVersion else {
      throw FormatError(
        description: "history format \(header.history) is not supported (expected \(formatVersion))"
      )
    }
    var events: [HistoryEvent] = []
    var lineNumber = 1
    while let line = lines.next() {
      lineNumber += 1
      do {
        events.append(try decoder.decode(HistoryEvent.self, from: Data(line)))
      } catch {
        throw FormatError(description: "history line \(lineNumber) is not a valid event: \(error)")
      }
    }
    return History(topic: header.topic, events: events, startedAt: header.startedAt)
  }

  public static func load(from file: URL) throws -> History {
    try parse(Data(contentsOf: file))
  }

  /// Where failing histories are kept: `$STREAMBUS_HISTORY_DIR`, else
  /// `<temp>/streambus-histories` (outside any test's temp directory, which is removed).
  public static func defaultDirectory() -> URL {
    if let configured = ProcessInfo.processInfo.environment["STREAMBUS_HISTORY_DIR"],
      !configured.isEmpty
    {
      return URL(fileURLWithPath: configured, isDirectory: true)
    }
    return FileManager.default.temporaryDirectory.appendingPathComponent(
      "streambus-histories", isDirectory: true)
  }

  /// Writes `history` to `<directory>/<name>-<time>.jsonl` and returns the path.
  public static func keep(_ history: History, name: String, in directory: URL? = nil) throws
    -> URL
  {
    let directory = directory ?? defaultDirectory()
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    let safeName = String(
      name.map { $0.isLetter || $0.isNumber || $0 == "-" ? $0 : "_" }.prefix(60))
    let stamp = Int64(Date().timeIntervalSince1970 * 1000)
    let file = directory.appendingPathComponent(
      "\(safeName)-\(stamp)-\(UInt32.random(in: 0...UInt32.max)).jsonl")
    try write(history, to: file)
    return file
  }
}
