/* A small program over the Lua library (the lua-src crate ships no
   interpreter): runs one chunk, so the link is a real one. */
#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

int main(void) {
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    int failed = luaL_dostring(L, "local t = {} for i = 1, 10 do t[i] = i * i end return #t");
    lua_close(L);
    return failed;
}
