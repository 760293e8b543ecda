mod send;
