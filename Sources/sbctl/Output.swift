import ArgumentParser
import Foundation
import NIOConcurrencyHelpers
import StreamBusClient
import StreamBusMetaClient

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// A JSON value with object keys kept in the order written (the documented field order).
enum JSONValue: Equatable, Sendable {
  case string(String)
  case integer(Int64)
  case bool(Bool)
  case null
  case array([JSONValue])
  case object([(String, JSONValue)])

  static func == (left: JSONValue, right: JSONValue) -> Bool {
    left.rendered() == right.rendered()
  }

  func rendered() -> String {
    var text = ""
    render(into: &text)
    return text
  }

  func render(into text: inout String) {
    switch self {
    case .string(let value): JSONValue.appendQuoted(value, to: &text)
    case .integer(let value): text += String(value)
    case .bool(let value): text += value ? "true" : "false"
    case .null: text += "null"
    case .array(let values):
      text += "["
      for (index, value) in values.enumerated() {
        if index > 0 { text += "," }
        value.render(into: &text)
      }
      text += "]"
    case .object(let fields):
      text += "{"
      for (index, (key, value)) in fields.enumerated() {
        if index > 0 { text += "," }
        JSONValue.appendQuoted(key, to: &text)
        text += ":"
        value.render(into: &text)
      }
      text += "}"
    }
  }

  static func appendQuoted(_ value: String, to text: inout String) {
    text += "\""
    for scalar in value.unicodeScalars {
      switch scalar {
      case "\"": text += "\\\""
      case "\\": text += "\\\\"
      case "\n": text += "\\n"
      case "\r": text += "\\r"
      case "\t": text += "\\t"
      case _ where scalar.value < 0x20:
        let hex = String(scalar.value, radix: 16)
        text += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
      default: text.unicodeScalars.append(scalar)
      }
    }
    text += "\""
  }
}

/// Key or value bytes as JSON fields: `"name": "text"` when the bytes are UTF-8, otherwise
/// `"name": null, "nameBase64": "..."`; `"name": null` alone when the bytes are absent.
func bytesFields(_ name: String, _ bytes: [UInt8]?) -> [(String, JSONValue)] {
  guard let bytes else { return [(name, .null)] }
  if let text = String(validating: bytes, as: UTF8.self) {
    return [(name, .string(text))]
  }
  return [(name, .null), (name + "Base64", .string(Data(bytes).base64EncodedString()))]
}

/// Key or value bytes in a table cell: the text, `<null>`, or `base64:...` for non-UTF-8.
func bytesCell(_ bytes: [UInt8]?) -> String {
  guard let bytes else { return "<null>" }
  if let text = String(validating: bytes, as: UTF8.self) { return text }
  return "base64:" + Data(bytes).base64EncodedString()
}

/// Where command output goes: stdout/stderr in the tool (stdout buffered, flushed before
/// every stderr line and on `flush()`), memory in tests.
final class Console: Sendable {
  private struct State {
    var pendingOutput: [UInt8] = []
    var out: [String] = []
    var err: [String] = []
  }

  private let isMemory: Bool
  private let state = NIOLockedValueBox(State())
  /// Buffered stdout bytes written in one syscall.
  static let outputBufferBytesMax = 64 * 1024

  private init(isMemory: Bool) {
    self.isMemory = isMemory
  }

  static func standard() -> Console { Console(isMemory: false) }
  static func memory() -> Console { Console(isMemory: true) }

  var standardOutputLines: [String] { state.withLockedValue { $0.out } }
  var standardErrorLines: [String] { state.withLockedValue { $0.err } }

  func line(_ text: String) {
    state.withLockedValue { state in
      if isMemory {
        state.out.append(text)
        return
      }
      state.pendingOutput.append(contentsOf: text.utf8)
      state.pendingOutput.append(UInt8(ascii: "\n"))
      if state.pendingOutput.count >= Self.outputBufferBytesMax {
        Self.writeAll(state.pendingOutput, to: 1)
        state.pendingOutput.removeAll(keepingCapacity: true)
      }
    }
  }

  func errorLine(_ text: String) {
    state.withLockedValue { state in
      if isMemory {
        state.err.append(text)
        return
      }
      Self.writeAll(state.pendingOutput, to: 1)
      state.pendingOutput.removeAll(keepingCapacity: true)
      Self.writeAll(Array((text + "\n").utf8), to: 2)
    }
  }

  /// Pushes buffered stdout to the pipe, so a reader sees records as they arrive.
  func flush() {
    state.withLockedValue { state in
      Self.writeAll(state.pendingOutput, to: 1)
      state.pendingOutput.removeAll(keepingCapacity: true)
    }
  }

  private static func writeAll(_ bytes: [UInt8], to descriptor: Int32) {
    bytes.withUnsafeBytes { buffer in
      var offset = 0
      while offset < buffer.count {
        guard let base = buffer.baseAddress else { return }
        let written = write(descriptor, base + offset, buffer.count - offset)
        if written < 0 {
          if errno == EINTR { continue }
          // The reader went away (closed pipe): nothing useful left to do with output.
          return
        }
        offset += written
      }
    }
  }
}

/// Documented exit codes.
enum ExitStatus {
  static let success: Int32 = 0
  /// The cluster answered with an error, or some records failed.
  static let requestFailed: Int32 = 1
  /// The cluster could not be reached or did not answer in time.
  static let unreachable: Int32 = 2
  /// Invalid flags or arguments (ArgumentParser's validation code).
  static let usage: Int32 = 64

  static func code(for error: StreamBusError) -> Int32 {
    switch error.kind {
    case .connection, .timeout: return unreachable
    case .invalidArgument: return usage
    default: return requestFailed
    }
  }

  static func code(for error: MetaClientError) -> Int32 {
    switch error.code {
    case .timeout: return unreachable
    case .invalidArgument: return usage
    default: return requestFailed
    }
  }
}

/// Runs a command body, turning errors into one stderr line and the documented exit code.
func runReportingErrors(console: Console, _ body: () async throws -> Int32) async throws {
  let status: Int32
  do {
    status = try await body()
  } catch let error as StreamBusError {
    console.errorLine("sbctl: error: \(error)")
    status = ExitStatus.code(for: error)
  } catch let error as MetaClientError {
    console.errorLine("sbctl: error: \(error)")
    status = ExitStatus.code(for: error)
  }
  console.flush()
  if status != ExitStatus.success {
    throw ExitCode(status)
  }
}

/// Pads columns to their widest cell.
func renderTable(_ rows: [[String]]) -> [String] {
  guard let columnCount = rows.map(\.count).max() else { return [] }
  var widths = [Int](repeating: 0, count: columnCount)
  for row in rows {
    for (index, cell) in row.enumerated() {
      widths[index] = max(widths[index], cell.count)
    }
  }
  return rows.map { row in
    var line = ""
    for (index, cell) in row.enumerated() {
      if index == row.count - 1 {
        line += cell
      } else {
        line += cell + String(repeating: " ", count: widths[index] - cell.count + 2)
      }
    }
    return line
  }
}
