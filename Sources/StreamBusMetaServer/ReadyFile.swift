import StreamBusTransport

#if canImport(FoundationEssentials)
  import FoundationEssentials
#else
  import Foundation
#endif

#if canImport(Glibc)
  import Glibc
#endif

/// The `--ready-file` of a metaserver: `raft=`, `api=` and `http=` lines with the bound
/// addresses, written to a temp file and renamed so a reader never sees half of it.
public enum ReadyFile {
  public static func write(path: String, raft: HostPort, api: HostPort, http: HostPort) throws {
    let text = "raft=\(raft)\napi=\(api)\nhttp=\(http)\n"
    let temporary = path + ".tmp-\(getpid())"
    do {
      try Data(text.utf8).write(to: URL(fileURLWithPath: temporary))
    } catch {
      throw TransportError(.invalidConfiguration, "cannot write ready file \(temporary): \(error)")
    }
    guard rename(temporary, path) == 0 else {
      let code = errno
      unlink(temporary)
      throw TransportError(
        .invalidConfiguration, "cannot rename \(temporary) to \(path): errno \(code)")
    }
  }

  /// Parses what `write` wrote: key → "host:port".
  public static func parse(_ text: String) -> [String: String] {
    var addresses: [String: String] = [:]
    for line in text.split(separator: "\n") {
      guard let equals = line.firstIndex(of: "=") else { continue }
      addresses[String(line[..<equals])] = String(line[line.index(after: equals)...])
    }
    return addresses
  }
}
