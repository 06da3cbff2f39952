@main struct Petrel { static func main() {} }
