package com.example;

import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;

// Produces tests/traces/java.txt. Repo.java is compiled with -g:none so its
// frames print as "(Unknown Source)"; the reflective call adds "(Native Method)".
public class Main {
    public static void main(String[] args) throws Exception {
        try {
            Method handle = Service.class.getMethod("handle", String.class);
            handle.invoke(null, "alice");
        } catch (InvocationTargetException e) {
            throw new IllegalStateException("request failed for alice", e.getCause());
        }
    }
}

class Service {
    public static String handle(String user) {
        return Repo.find(user).trim();
    }
}
