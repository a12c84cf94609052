/*
 * Defines std::ios_base_library_init(), the one symbol for which TorchSharp 0.107.0's
 * libLibTorchSharp.so asks for GLIBCXX_3.4.32. GCC 13's libstdc++ added it as a marker that
 * makes a binary initialise the standard streams; older libstdc++ (Debian 12: GLIBCXX_3.4.30)
 * initialises them unconditionally, so an empty definition is all that is needed.
 * Built and added only where the system libstdc++ lacks GLIBCXX_3.4.32 (see build/BuildTools/NativeFix.cs).
 */
void _ZSt21ios_base_library_initv(void)
{
}
