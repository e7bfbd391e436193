DROP TABLE IF EXISTS dead_letters;
DROP TABLE IF EXISTS classifications;
DROP TABLE IF EXISTS tweets;
