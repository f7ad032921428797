import StreamBusStorage

/// The identity of a broker's data directory: a random number written into the directory
/// the first time a cluster broker uses it, and sent with every registration. A broker that
/// comes back under its old id with another directory (a replaced disk, a wiped or lost
/// directory) is known to have lost its data, so the controller takes it out of every ISR
/// instead of letting it be elected leader of an empty log (Kafka's KIP-858 in miniature).
///
/// A directory without the file (new, or written by an older version) gets a new identity;
/// a file that is there but unreadable stops the broker, since guessing could either lose
/// data (reusing an id) or fence a healthy replica out of its ISRs (a new one).
enum DataDirectoryIdentity {
  static let fileName = "directory.id"

  static func loadOrCreate(directory: String, fileSystem: any LogFileSystem) throws -> Int64 {
    let path = directory + "/" + fileName
    if let bytes = try AtomicFile.read(path, fileSystem: fileSystem) {
      let words = String(decoding: bytes, as: UTF8.self).split(whereSeparator: \.isWhitespace)
      guard words.count == 1, let id = Int64(words[0]), id > 0 else {
        throw BrokerError(
          "\(path) does not hold a data directory id (a positive decimal number); it was "
            + "written by this broker when it first used the directory. If the directory's "
            + "data is intact, restore the file; if not, remove it and the broker registers "
            + "as one without data")
      }
      return id
    }
    let id = Int64.random(in: 1...Int64.max)
    try AtomicFile.write(path, Array("\(id)\n".utf8), fileSystem: fileSystem)
    return id
  }
}
