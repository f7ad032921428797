import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A running `databroker --standalone` and where it listens.
public struct BrokerProcess: Sendable {
  public let process: ManagedProcess
  public let dataDirectory: URL
  /// `host:port` actually bound (the OS-chosen port when started on port 0).
  public let address: String

  public var host: String { String(address[..<(address.lastIndex(of: ":") ?? address.endIndex)]) }
  public var port: Int {
    guard let colon = address.lastIndex(of: ":") else { return 0 }
    return Int(address[address.index(after: colon)...]) ?? 0
  }

  /// Simulates a crash: SIGKILL, then waits until the process is gone.
  public func crash() async throws {
    process.signal(SIGKILL)
    try await process.waitForExit(timeoutMs: 10_000)
  }

  /// Graceful stop: SIGTERM, then waits for the exit status.
  public func terminate(timeoutMs: Int = 20_000) async throws -> ProcessExit {
    process.signal(SIGTERM)
    return try await process.waitForExit(timeoutMs: timeoutMs)
  }

  static let listeningMarker = "listening on "

  /// Waits for the ready file, then reads the bound address from it or from the
  /// `listening on HOST:PORT` stderr line. Fails early when the broker exits.
  static func waitUntilReady(
    process: ManagedProcess, readyFile: URL, timeoutMs: Int
  ) async throws -> String {
    let deadline = ContinuousClock.now + .milliseconds(timeoutMs)
    while ContinuousClock.now < deadline {
      if let exit = process.exit {
        throw HarnessError(
          "databroker exited before it was ready (\(exit)); stderr:\n\(process.stderrTail())")
      }
      if FileManager.default.fileExists(atPath: readyFile.path) {
        if let address = address(inReadyFile: readyFile)
          ?? address(inLog: process.stderrText())
        {
          return address
        }
      }
      try await Task.sleep(for: .milliseconds(10))
    }
    throw HarnessError(
      "databroker not ready within \(timeoutMs) ms (ready file \(readyFile.path)); "
        + "stderr:\n\(process.stderrTail())")
  }

  /// The ready file may hold the address (`host:port`, possibly inside other text).
  static func address(inReadyFile file: URL) -> String? {
    guard let text = try? String(contentsOf: file, encoding: .utf8) else { return nil }
    for token in text.split(whereSeparator: { $0.isWhitespace || $0 == "\"" || $0 == "," }) {
      if let address = parsedAddress(String(token)) { return address }
    }
    return nil
  }

  static func address(inLog text: String) -> String? {
    for line in text.split(separator: "\n").reversed() {
      guard let range = line.range(of: listeningMarker) else { continue }
      let rest = line[range.upperBound...]
      let token = rest.prefix { !$0.isWhitespace && $0 != "," && $0 != "\"" }
      if let address = parsedAddress(String(token)) { return address }
    }
    return nil
  }

  /// Accepts `host:port` / `[v6]:port` with a non-zero port.
  static func parsedAddress(_ token: String) -> String? {
    var token = token
    for prefix in ["tcp://", "listen=", "address="] where token.hasPrefix(prefix) {
      token.removeFirst(prefix.count)
    }
    guard let colon = token.lastIndex(of: ":"), colon != token.startIndex,
      let port = Int(token[token.index(after: colon)...]), (1...65535).contains(port)
    else { return nil }
    var host = String(token[..<colon])
    if host.hasPrefix("[") && host.hasSuffix("]") {
      host = String(host.dropFirst().dropLast())
    }
    guard !host.isEmpty else { return nil }
    // A wildcard bind is reachable on loopback.
    if host == "0.0.0.0" { host = "127.0.0.1" }
    if host == "::" { host = "::1" }
    return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
  }
}
