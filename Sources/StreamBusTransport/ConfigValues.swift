#if canImport(FoundationEssentials)
  import FoundationEssentials
#else
  import Foundation
#endif

/// Settings of a StreamBus process: a `key = value` file, with command-line flags on top.
///
/// File format: one `key = value` per line; blank lines and lines starting with `#` are
/// ignored, and ` #` after a value starts a comment. Unknown keys, duplicate keys and
/// lines without `=` are errors that name the file and line.
///
/// Use from an ArgumentParser command: declare each flag as an optional, load the file named
/// by `--config` (or start from `ConfigValues(validKeys:)`), then
/// `values.merging(flags: ["port": port.map(String.init), ...])`, where nil means "flag not
/// given" so the file's value stays. The typed getters report the key and where the bad value
/// came from (file and line, or the flag).
public struct ConfigValues: Sendable {
  /// Where a value came from, for error messages.
  public enum Origin: Sendable, Equatable, CustomStringConvertible {
    case file(path: String, line: Int)
    case flag

    public var description: String {
      switch self {
      case .file(let path, let line): return "\(path):\(line)"
      case .flag: return "command line"
      }
    }
  }

  private struct Entry: Sendable {
    var value: String
    var origin: Origin
  }

  /// Keys this process understands, sorted (for error messages).
  public let validKeys: [String]
  private var entries: [String: Entry] = [:]

  /// No values yet: only flags, or only defaults.
  public init(validKeys: some Sequence<String>) {
    self.validKeys = Set(validKeys).sorted()
  }

  /// Parses config file text; `path` is only used in error messages.
  public init(parsing text: String, path: String, validKeys: some Sequence<String>) throws {
    self.init(validKeys: validKeys)
    let known = Set(self.validKeys)
    for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false)
      .enumerated()
    {
      let lineNumber = index + 1
      let line = stripComment(rawLine).trimmingWhitespace()
      if line.isEmpty {
        continue
      }
      func invalid(_ reason: String) -> TransportError {
        TransportError(.invalidConfiguration, "\(path):\(lineNumber): \(reason)")
      }
      guard let equals = line.firstIndex(of: "=") else {
        throw invalid("expected \"key = value\", found \"\(line)\"")
      }
      let key = String(line[..<equals].trimmingWhitespace())
      let value = String(line[line.index(after: equals)...].trimmingWhitespace())
      guard !key.isEmpty else {
        throw invalid("missing key before \"=\"")
      }
      guard known.contains(key) else {
        throw invalid(
          "unknown key \"\(key)\"; valid keys: \(self.validKeys.joined(separator: ", "))")
      }
      guard !value.isEmpty else {
        throw invalid("key \"\(key)\" has no value")
      }
      if let previous = entries[key] {
        throw invalid("key \"\(key)\" is already set at \(previous.origin)")
      }
      entries[key] = Entry(value: value, origin: .file(path: path, line: lineNumber))
    }
  }

  /// Reads and parses a config file.
  public init(contentsOfFile path: String, validKeys: some Sequence<String>) throws {
    let data: Data
    do {
      data = try Data(contentsOf: URL(fileURLWithPath: path))
    } catch {
      throw TransportError(.invalidConfiguration, "cannot read config file \(path): \(error)")
    }
    guard let text = String(data: data, encoding: .utf8) else {
      throw TransportError(.invalidConfiguration, "config file \(path) is not valid UTF-8")
    }
    try self.init(parsing: text, path: path, validKeys: validKeys)
  }

  /// A process's settings: the config file when one is given, with the flags on top (flags
  /// win). Throws for an unreadable file, a malformed line or an unknown key.
  public static func load(
    file path: String?, validKeys: some Sequence<String>, flags: [String: String?]
  ) throws -> ConfigValues {
    let keys = Array(validKeys)
    let file =
      try path.map { try ConfigValues(contentsOfFile: $0, validKeys: keys) }
      ?? ConfigValues(validKeys: keys)
    return file.merging(flags: flags)
  }

  /// These values with command-line flags on top; a nil flag value means "not given".
  ///
  /// Flag names are keys; a name outside `validKeys` is a programming error.
  public func merging(flags: [String: String?]) -> ConfigValues {
    var merged = self
    for (key, value) in flags {
      precondition(validKeys.contains(key), "flag \(key) is not a valid config key")
      if let value {
        merged.entries[key] = Entry(value: value, origin: .flag)
      }
    }
    return merged
  }

  /// The raw value, nil when neither the file nor a flag set it.
  public func string(_ key: String) -> String? {
    entry(key)?.value
  }

  public func string(_ key: String, default defaultValue: String) -> String {
    string(key) ?? defaultValue
  }

  /// Where the value of `key` came from; nil when unset.
  public func origin(of key: String) -> Origin? {
    entries[key]?.origin
  }

  public func int(_ key: String, default defaultValue: Int, range: ClosedRange<Int>? = nil) throws
    -> Int
  {
    guard let entry = entry(key) else { return defaultValue }
    guard let value = Int(entry.value) else {
      throw invalidValue(key, entry, "\"\(entry.value)\" is not an integer")
    }
    if let range, !range.contains(value) {
      throw invalidValue(
        key, entry, "\(value) is outside \(range.lowerBound)...\(range.upperBound)")
    }
    return value
  }

  public func bool(_ key: String, default defaultValue: Bool) throws -> Bool {
    guard let entry = entry(key) else { return defaultValue }
    switch entry.value.lowercased() {
    case "true", "yes", "on", "1": return true
    case "false", "no", "off", "0": return false
    default:
      throw invalidValue(key, entry, "\"\(entry.value)\" is not true or false")
    }
  }

  public func hostPort(_ key: String, default defaultValue: HostPort) throws -> HostPort {
    guard let entry = entry(key) else { return defaultValue }
    do {
      return try HostPort(parsing: entry.value)
    } catch let error as TransportError {
      throw invalidValue(key, entry, error.message)
    }
  }

  /// A comma-separated list of addresses, such as the metaserver quorum.
  public func hostPorts(_ key: String, default defaultValue: [HostPort]) throws -> [HostPort] {
    guard let entry = entry(key) else { return defaultValue }
    do {
      return try entry.value.split(separator: ",").map { try HostPort(parsing: String($0)) }
    } catch let error as TransportError {
      throw invalidValue(key, entry, error.message)
    }
  }

  private func entry(_ key: String) -> Entry? {
    precondition(validKeys.contains(key), "\(key) is not a valid config key")
    return entries[key]
  }

  private func invalidValue(_ key: String, _ entry: Entry, _ reason: String) -> TransportError {
    switch entry.origin {
    case .file(let path, let line):
      return TransportError(
        .invalidConfiguration, "\(path):\(line): bad value for \"\(key)\": \(reason)")
    case .flag:
      return TransportError(.invalidConfiguration, "bad value for --\(key): \(reason)")
    }
  }
}

/// A `#` at the start of the line or after whitespace starts a comment.
private func stripComment(_ line: Substring) -> Substring {
  var previousIsWhitespace = true
  for index in line.indices {
    let character = line[index]
    if character == "#" && previousIsWhitespace {
      return line[..<index]
    }
    previousIsWhitespace = character.isWhitespace
  }
  return line
}
