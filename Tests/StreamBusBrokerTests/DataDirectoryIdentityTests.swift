import Foundation
import StreamBusStorage
import Testing

@testable import StreamBusBroker

@Suite struct DataDirectoryIdentityTests {
  @Test func anIdentityIsCreatedOnceAndKept() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let fileSystem = PosixFileSystem()
    let first = try DataDirectoryIdentity.loadOrCreate(
      directory: directory.path, fileSystem: fileSystem)
    #expect(first > 0)
    let again = try DataDirectoryIdentity.loadOrCreate(
      directory: directory.path, fileSystem: fileSystem)
    #expect(again == first)
    // An emptied directory is another directory.
    try FileManager.default.removeItem(
      atPath: directory.path + "/" + DataDirectoryIdentity.fileName)
    let replaced = try DataDirectoryIdentity.loadOrCreate(
      directory: directory.path, fileSystem: fileSystem)
    #expect(replaced != first)
  }

  @Test func anUnreadableIdentityStopsTheBrokerAndIsLeftAsItWas() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let path = directory.path + "/" + DataDirectoryIdentity.fileName
    for garbage in ["", "abc\n", "-5\n", "0\n", "12 13\n", "99999999999999999999\n"] {
      try Data(garbage.utf8).write(to: URL(fileURLWithPath: path))
      let error = #expect(throws: BrokerError.self) {
        try DataDirectoryIdentity.loadOrCreate(
          directory: directory.path, fileSystem: PosixFileSystem())
      }
      #expect(error?.description.contains(path) == true, "\(String(describing: error))")
      #expect(try String(contentsOfFile: path, encoding: .utf8) == garbage)
    }
  }
}
