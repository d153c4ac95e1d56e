package com.example;

import java.util.HashMap;
import java.util.Map;

class Repo {
    private static final Map<String, Object> USERS = new HashMap<>();

    static String find(String user) {
        return USERS.get(user).toString();
    }
}
