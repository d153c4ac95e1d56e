// Produces tests/traces/csharp.txt (Mono):
//   mcs -debug csharp_src.cs -out:csharp_src.exe && mono --debug csharp_src.exe 2> csharp.txt
using System;
using System.Collections.Generic;

namespace Shop.Orders
{
    public class OrderQueue
    {
        private readonly Queue<string> pending = new Queue<string>();

        public string Next(int attempt)
        {
            if (pending.Count == 0)
                throw new InvalidOperationException("queue is empty (attempt " + attempt + ")");
            return pending.Dequeue();
        }
    }

    public static class Program
    {
        static string Drain(OrderQueue queue)
        {
            return queue.Next(1);
        }

        public static void Main(string[] args)
        {
            Console.WriteLine(Drain(new OrderQueue()));
        }
    }
}
